"""Size limits on what deltatrain reads from archives and model stores (one place for all).

A model archive or a store can come from anyone who can write to the store, so
nothing is read or extracted without a bound: an archive that expands to more
than ``max_extracted_bytes``, or holds more than ``max_members`` entries, is
refused while its headers are read, before anything is written to disk; a JSON
side file (``metadata.json``, ``fingerprint.json``, ``metrics.json``, the
store manifest) larger than ``max_json_bytes`` is refused before it is parsed.

Tests pass smaller :class:`Limits` to the functions that take ``limits=``.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Upper bounds for one read of an archive or a store file."""

    max_extracted_bytes: int = 512 * MiB
    max_members: int = 10_000
    max_json_bytes: int = 32 * MiB


#: The limits used unless a caller passes others.
DEFAULT_LIMITS = Limits()


def format_bytes(size: int) -> str:
    """``size`` in the largest binary unit that keeps it >= 1, e.g. ``'1.0 GiB'``."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # unreachable
