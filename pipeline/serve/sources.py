"""Where the served model comes from: an archive, a folder of archives, or a model store.

A source answers two questions: ``poll()`` -- which model is the latest now
(cheaply; ``None`` when nothing changed since the last poll) -- and
``fetch()`` -- put that model's archive on local disk (verified).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from pipeline.archive import ARCHIVE_SUFFIX, find_latest_model, model_name_of
from pipeline.errors import ModelError, StoreError
from pipeline.stores.manifest import parse_manifest
from pipeline.stores.layout import MANIFEST_KEY
from pipeline.stores.model_store import ModelStore

from .watch import ManifestWatcher


@dataclass(frozen=True)
class Candidate:
    """The latest model a source names; ``key`` identifies its exact bytes."""

    name: str
    key: str
    sha256: str | None = None
    location: str = ""


@dataclass(frozen=True)
class Fetched:
    """A candidate's archive on local disk, with what the source knows about it."""

    path: Path
    sha256: str | None
    metrics: Mapping[str, Any] = field(default_factory=dict)


class ModelSource(Protocol):
    """A place models come from."""

    def describe(self) -> str:
        """Where models come from, for logs and ``/status`` (no credentials)."""
        ...

    def poll(self) -> Candidate | None:
        """The latest model when it may have changed since the last poll; None: unchanged or none."""
        ...

    def reset(self) -> None:
        """Forget the last poll, so the next one reports the latest model again."""
        ...

    def fetch(self, candidate: Candidate, directory: Path) -> Fetched:
        """The candidate's archive on local disk (downloaded into ``directory`` if needed)."""
        ...


_UNSEEN = object()  # no poll yet: the first poll always names the latest model


class ArchiveSource:
    """An archive file, or a folder whose latest archive (by training time) is served."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._token: object = _UNSEEN

    def describe(self) -> str:
        """The path."""
        return str(self.path)

    def poll(self) -> Candidate | None:
        """Stat the file (or list the folder); read archive metadata only when something moved."""
        token = self._stat_token()
        if token == self._token:
            return None
        latest = find_latest_model(self.path)
        if latest is None:
            raise ModelError(
                "no model archive found" if self.path.exists() else "model path not found",
                location=str(self.path),
                hint=f"pass a {ARCHIVE_SUFFIX} model archive or a folder of them (train one with 'deltatrain train')",
            )
        self._token = token
        stat = latest.stat()
        return Candidate(model_name_of(latest), f"file:{latest}:{stat.st_size}:{stat.st_mtime_ns}", None, str(latest))

    def reset(self) -> None:
        """Forget the last stat."""
        self._token = _UNSEEN

    def fetch(self, candidate: Candidate, directory: Path) -> Fetched:
        """The archive itself (nothing to download)."""
        return Fetched(Path(candidate.location), None)

    def _stat_token(self) -> tuple[Any, ...] | None:
        try:
            if self.path.is_dir():
                return tuple(sorted(
                    (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
                    for entry in os.scandir(self.path) if entry.name.endswith(ARCHIVE_SUFFIX)
                ))
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class StoreSource:
    """A model store: the manifest's ``latest`` (only gated models are ever listed there)."""

    def __init__(self, store: ModelStore, watcher: ManifestWatcher) -> None:
        self.store = store
        self.watcher = watcher
        self._token: str | None = None
        self._seen = False

    def describe(self) -> str:
        """The store URL."""
        return self.store.url

    def poll(self) -> Candidate | None:
        """Conditional manifest read; the latest entry when the manifest changed."""
        read = self.watcher.read(self._token if self._seen else None)
        if self._seen and not read.changed:
            return None
        if read.data is None:
            if read.token is None:  # no manifest: the store is empty
                self._token, self._seen = None, True
                raise StoreError("the model store has no models yet", location=self.store.backend.describe(MANIFEST_KEY),
                                 hint="publish one with 'deltatrain ci', or wait: the server keeps polling")
            return None
        manifest = parse_manifest(read.data, where=self.store.backend.describe(MANIFEST_KEY))
        self._token, self._seen = read.token, True
        if manifest.latest is None:
            return None
        entry = manifest.entry(manifest.latest)
        assert entry is not None  # parse_manifest checks that latest is listed
        return Candidate(entry.name, f"{entry.name}:sha256:{entry.sha256}", entry.sha256, self.store.backend.describe(entry.archive))

    def reset(self) -> None:
        """Read the whole manifest on the next poll."""
        self._token, self._seen = None, False

    def fetch(self, candidate: Candidate, directory: Path) -> Fetched:
        """Download and verify the archive's sha256 (ModelStore.download); read its metrics."""
        path = self.store.download(candidate.name, directory)
        metrics: Mapping[str, Any] = {}
        latest = self.store.read_latest()
        if latest is not None and latest.name == candidate.name:
            metrics = latest.metrics
        return Fetched(path, candidate.sha256, metrics)


#: URL schemes ``--model`` treats as a model store rather than a path.
STORE_SCHEMES = ("file://", "http://", "https://", "s3://")


def open_source(
    *, model: str | None, store: str | None, base_dir: Path, store_token: str | None = None,
    s3_endpoint_url: str | None = None,
) -> ModelSource:
    """The source ``--model`` / ``--store`` name: an archive, a folder of archives, or a store URL."""
    from pipeline.stores.registry import open_store

    from .watch import build_watcher

    if model is not None and store is not None:
        from pipeline.errors import UsageError

        raise UsageError("pass either --model or --store, not both",
                         hint="--model PATH serves an archive or folder; --store URL follows a model store")
    if model is not None and not model.startswith(STORE_SCHEMES):
        path = Path(model)
        return ArchiveSource(path if path.is_absolute() else base_dir / path)
    url = model if model is not None else store
    opened = open_store(url, base_dir=base_dir, token=store_token, s3_endpoint_url=s3_endpoint_url)
    return StoreSource(opened, build_watcher(opened, store_token))
