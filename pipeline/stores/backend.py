"""The one I/O seam of the model store: a key/value Backend per URL scheme.

Besides plain reads and writes, every backend offers one compare-and-swap
protocol, used for the manifest so that concurrent publishers never lose a
model::

    current = backend.get_versioned(key)          # bytes + opaque version, or None
    ok = backend.put_if_version(key, data, current.version if current else None)
    # ok is False when another writer changed (or created) the key since it was read:
    # re-read, merge, try again (ModelStore does this, with bounded retries)

The version is whatever the service can compare atomically: a content hash under
a file lock (folders), the ETag with ``If-Match`` / ``If-None-Match: *`` (HTTP,
S3 conditional writes). A new backend (GitHub Releases, GitLab packages, ...)
implements these two methods and inherits safe concurrent publishing.

Backends raise only :mod:`pipeline.errors` store errors: ``StoreNotFoundError``
for a missing key, ``StoreAuthError`` for refused credentials, ``StoreError``
for everything else, each translated from the vendor exception with
``raise ... from exc``. Messages name the key's URL and never hold credentials.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from pipeline.errors import StoreIntegrityError


#: How often a manifest update is retried when other runs keep changing the manifest.
CAS_ATTEMPTS = 12

@dataclass(frozen=True)
class Versioned:
    """The bytes of a key and the version they were read at (ETag, content hash)."""

    data: bytes
    version: str


@runtime_checkable
class Backend(Protocol):
    """Byte storage addressed by relative keys such as ``models/x/model.tar.gz``."""

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Read a whole (small) object; StoreNotFoundError when missing, StoreIntegrityError
        when it is larger than ``max_bytes`` (checked before it is read in full)."""
        ...

    def get_versioned(self, key: str, *, max_bytes: int | None = None) -> Versioned | None:
        """Read an object with its version token; None when it does not exist."""
        ...

    def put_if_version(self, key: str, data: bytes, expected: str | None) -> bool:
        """Write ``data`` only if ``key`` is still at version ``expected`` (None: only if it
        does not exist); False, writing nothing, when another writer got there first."""
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
class Conditional:
    """What a conditional read found: ``data`` is None when the key is unchanged since the
    token the caller passed; ``token`` identifies the version read (None: not cacheable)."""

    token: str | None
    data: bytes | None


@runtime_checkable
class ConditionalBackend(Protocol):
    """Optional: backends that can tell "unchanged since my last read" without sending the data
    (a stat of the file, ``If-None-Match`` with the ETag, the newest manifest generation)."""

    def get_if_changed(
        self, key: str, token: str | None, *, max_bytes: int | None = None
    ) -> Conditional | None:
        """None when ``key`` does not exist; data None when it is still at ``token``; else the
        data and its new token."""
        ...


@dataclass(frozen=True)
class ListedKey:
    """A key found by listing, with when it was last written."""

    key: str
    modified: datetime


@runtime_checkable
class ListingBackend(Protocol):
    """Optional: backends that can list keys (folders, S3); plain HTTP cannot."""

    def list_keys(self, prefix: str) -> list[ListedKey]:
        """Every key under ``prefix`` (a folder like ``models/``), with its modification time."""
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


def content_version(data: bytes) -> str:
    """A version token computed from the content, for services without ETags."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def too_large(key: str, where: str, max_bytes: int) -> StoreIntegrityError:
    """The error for an object that exceeds its size limit."""
    return StoreIntegrityError(
        f"{key} in the model store is larger than the limit of {max_bytes} bytes",
        location=where,
        hint="the file was not written by deltatrain, or it was damaged; repair or delete it",
    )
