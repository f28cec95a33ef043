"""File modes for files deltatrain writes through ``tempfile.mkstemp`` (which creates them 0600)."""

from __future__ import annotations

import os
from pathlib import Path


def read_umask() -> int:
    """The process umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path | str) -> None:
    """Give ``path`` the mode a plain ``open(..., "w")`` would: 0666 minus the umask.

    ``mkstemp`` creates its files readable by their owner only; archives and
    store files are meant for later CI steps, other users and artifact uploads.
    """
    os.chmod(path, 0o666 & ~read_umask())
