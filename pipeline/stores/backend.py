"""The one I/O seam of the model store: a key/value Backend per URL scheme.

Backends raise only :mod:`pipeline.errors` store errors: ``StoreNotFoundError``
for a missing key, ``StoreAuthError`` for refused credentials, ``StoreError``
for everything else, each translated from the vendor exception with
``raise ... from exc``. Messages name the key's URL and never hold credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """Byte storage addressed by relative keys such as ``models/x/model.tar.gz``."""

    def get_bytes(self, key: str) -> bytes:
        """Read a whole (small) object; StoreNotFoundError when missing."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a whole object, replacing any previous one."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file, streamed so big archives never sit in memory."""
        ...

    def get_to_file(self, key: str, path: Path) -> None:
        """Download an object into ``path`` (the caller makes it atomic)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        ...

    def size(self, key: str) -> int | None:
        """Size of ``key`` in bytes, None if unknown; StoreNotFoundError when missing."""
        ...

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""
        ...

    def describe(self, key: str) -> str:
        """Human/URL location of ``key`` (the store root for ``""``), without credentials."""
        ...


@dataclass(frozen=True)
class BackendOptions:
    """What open_store passes to every backend factory; each uses what it needs."""

    base_dir: Path
    token: str | None = None
    s3_endpoint_url: str | None = None

    def __repr__(self) -> str:
        token = "***" if self.token else None
        return (
            f"BackendOptions(base_dir={self.base_dir!r}, token={token!r},"
            f" s3_endpoint_url={self.s3_endpoint_url!r})"
        )
