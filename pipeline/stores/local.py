"""Model store in a local folder (``file://`` URLs, plain paths, the embedded default)."""

from __future__ import annotations

import os
import shutil

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit
from urllib.request import url2pathname

from pipeline.errors import StoreError, StoreNotFoundError
from pipeline.fileperms import apply_umask
from pipeline.stores.backend import (
    BackendOptions,
    Conditional,
    ListedKey,
    Versioned,
    content_version,
    too_large,
)
from pipeline.stores.layout import check_key

_CHUNK = 1024 * 1024


class LocalBackend:
    """Keys are files under ``root``; every write is atomic (temp file, fsync, os.replace)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Read a whole file (at most ``max_bytes``)."""
        path = self._path(key)
        try:
            with open(path, "rb") as handle:
                data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
        except OSError as exc:
            raise self._error("read", key, exc) from exc
        if max_bytes is not None and len(data) > max_bytes:
            raise too_large(key, self.describe(key), max_bytes)
        return data

    def get_versioned(self, key: str, *, max_bytes: int | None = None) -> Versioned | None:
        """Read a file; its version is the hash of its content."""
        try:
            data = self.get_bytes(key, max_bytes=max_bytes)
        except StoreNotFoundError:
            return None
        return Versioned(data, content_version(data))

    def get_if_changed(
        self, key: str, token: str | None, *, max_bytes: int | None = None
    ) -> Conditional | None:
        """Open and ``fstat`` the file: unchanged when inode, size and mtime match ``token``
        (every write replaces the file, so a new version always has a new inode)."""
        path = self._path(key)
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                current = f"stat:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
                if current == token:
                    return Conditional(current, None)
                if max_bytes is not None and stat.st_size > max_bytes:
                    raise too_large(key, self.describe(key), max_bytes)
                data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error("read", key, exc) from exc
        if max_bytes is not None and len(data) > max_bytes:
            raise too_large(key, self.describe(key), max_bytes)
        return Conditional(current, data)

    def put_if_version(self, key: str, data: bytes, expected: str | None) -> bool:
        """Compare and replace under an exclusive lock on ``.<name>.lock`` beside the file.

        Every writer of a versioned key takes the lock; readers need none, since the
        replace itself is atomic.
        """
        target = self._path(key)
        lock_path = target.parent / f".{target.name}.lock"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            lock = open(lock_path, "a+b")
        except OSError as exc:
            raise self._error("write", key, exc) from exc
        with lock:
            _lock_exclusive(lock)
            try:
                current = self.get_versioned(key)
                if (current.version if current else None) != expected:
                    return False
                self.put_bytes(key, data)
                return True
            finally:
                _unlock(lock)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a whole file atomically."""
        self._write_atomic(key, lambda out: out.write(data))

    def put_file(self, key: str, path: Path) -> None:
        """Copy a local file in atomically, in chunks."""
        try:
            source = open(path, "rb")
        except OSError as exc:
            raise StoreError(
                f"cannot read {path} to upload it: {exc.strerror}", location=str(path)
            ) from exc
        with source:
            self._write_atomic(key, lambda out: shutil.copyfileobj(source, out, _CHUNK))

    def get_to_file(self, key: str, path: Path) -> None:
        """Copy a stored file out to ``path``."""
        try:
            source = open(self._path(key), "rb")
        except OSError as exc:
            raise self._error("read", key, exc) from exc
        try:
            with source, open(path, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
        except OSError as exc:
            raise StoreError(
                f"cannot copy {key} to {path}: {exc.strerror or exc}", location=str(path)
            ) from exc

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        """File size in bytes."""
        try:
            return self._path(key).stat().st_size
        except OSError as exc:
            raise self._error("stat", key, exc) from exc

    def delete(self, key: str) -> None:
        """Remove the file and any folders it leaves empty (never the root)."""
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._error("delete", key, exc) from exc
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (or already gone): leave it
            parent = parent.parent

    def list_keys(self, prefix: str) -> list[ListedKey]:
        """Files under ``prefix`` with their mtimes; hidden files (temp files, locks) are skipped."""
        folder = self.root.joinpath(*check_key(prefix.rstrip("/")).split("/"))
        found = []
        try:
            for path in folder.rglob("*"):
                relative = path.relative_to(self.root)
                if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                    found.append(ListedKey(relative.as_posix(), modified))
        except FileNotFoundError:
            return found  # a file deleted while listing, or no such folder
        except OSError as exc:
            raise self._error("list", prefix, exc) from exc
        return found

    def describe(self, key: str) -> str:
        """``file://`` URL of the key (of the root for ``""``)."""
        return (self._path(key) if key else self.root).as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _write_atomic(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
            )
        except OSError as exc:
            raise self._error("write", key, exc) from exc
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            apply_umask(temp)
            os.replace(temp, target)
        except BaseException as exc:
            temp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise self._error("write", key, exc) from exc
            raise
        _fsync_dir(target.parent)

    def _error(self, action: str, key: str, exc: OSError) -> StoreError:
        where = self.describe(key)
        if isinstance(exc, FileNotFoundError) and action != "write":
            return StoreNotFoundError(f"no such file in the model store: {key}", location=where)
        return StoreError(
            f"cannot {action} {key} in the model store: {exc.strerror or exc}",
            location=where,
            hint=f"check that {self.root} exists, is writable and has free space",
        )


def _lock_exclusive(handle: BinaryIO) -> None:
    """Block until this process holds the exclusive lock on ``handle``'s file."""
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    else:  # pragma: no cover - Windows
        import msvcrt

        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue


def _unlock(handle: BinaryIO) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


def _fsync_dir(path: Path) -> None:
    """Persist a rename on POSIX; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def open_backend(url: str, options: BackendOptions) -> LocalBackend:
    """Build a LocalBackend from a ``file://`` URL or a path relative to ``options.base_dir``."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreError(
                f"file:// store URLs must be local, received host {parts.netloc!r}",
                hint="use file:///absolute/path or a plain path (received " + repr(url) + ")",
            )
        return LocalBackend(Path(url2pathname(parts.path)))
    return LocalBackend(options.base_dir / Path(url).expanduser())
