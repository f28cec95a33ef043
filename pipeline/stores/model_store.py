"""ModelStore: publish, read and download models through any Backend."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import StoreError, StoreIntegrityError, StoreNotFoundError
from pipeline.stores.backend import Backend
from pipeline.stores.layout import MANIFEST_KEY, check_name, model_keys
from pipeline.stores.manifest import (
    Manifest,
    ManifestEntry,
    add_entry,
    build_entry,
    parse_manifest,
    render_json,
    render_manifest,
)

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredModel:
    """A model in the store, with its small side files already read."""

    name: str
    archive_key: str
    sha256: str
    size: int
    uploaded_at: str  # ISO 8601 UTC, e.g. "2024-05-01T12:00:00Z"
    fingerprint: dict[str, Any]
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    url: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ModelStore:
    """Models plus a manifest that names the latest; the manifest is always written last."""

    def __init__(self, backend: Backend, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.backend = backend
        self.url = backend.describe("")
        self._clock = clock

    def __repr__(self) -> str:
        return f"ModelStore({self.url!r})"

    def read_manifest(self) -> dict[str, Any] | None:
        """The validated manifest as JSON data, or None when the store has none yet."""
        manifest = self._read_manifest()
        return manifest.to_dict() if manifest else None

    def read_latest(self) -> StoredModel | None:
        """The latest model with fingerprint, metadata and metrics; never downloads the archive."""
        manifest = self._read_manifest()
        if manifest is None or manifest.latest is None:
            return None
        entry = manifest.entry(manifest.latest)
        assert entry is not None  # parse_manifest guarantees latest is listed
        return self._stored_model(entry)

    def download(self, name: str, dest_dir: Path) -> Path:
        """Download model ``name`` to ``dest_dir/<name>.tar.gz``; verify the manifest's sha256."""
        entry = self._require_entry(name)
        dest = dest_dir / f"{name}.tar.gz"
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
            os.close(fd)
        except OSError as exc:
            raise StoreError(
                f"cannot write to {dest_dir}: {exc.strerror}", location=str(dest_dir)
            ) from exc
        temp = Path(temp_name)
        try:
            self.backend.get_to_file(entry.archive, temp)
            sha256, size = compute_sha256(temp)
            if sha256 != entry.sha256 or size != entry.size:
                raise StoreIntegrityError(
                    f"downloaded archive of {name!r} does not match the manifest: expected sha256"
                    f" {entry.sha256} ({entry.size} bytes), received {sha256} ({size} bytes)",
                    location=self.backend.describe(entry.archive),
                    hint="the stored archive is damaged or was replaced; publish the model again",
                )
            os.replace(temp, dest)
        except OSError as exc:
            raise StoreError(f"cannot write {dest}: {exc.strerror}", location=str(dest)) from exc
        finally:
            temp.unlink(missing_ok=True)
        return dest

    def publish(
        self,
        archive: Path,
        *,
        name: str,
        fingerprint: dict[str, Any],
        metadata: dict[str, Any],
        metrics: dict[str, Any],
        keep: int = 10,
    ) -> StoredModel:
        """Upload archive and side files, verify them, write the manifest last, then prune."""
        check_name(name)
        if keep < 1:
            raise StoreError(
                f"keep must be at least 1 (received {keep})", hint="keep at least the new model"
            )
        sha256, size = compute_sha256(archive)
        previous = self._read_manifest()
        entry = build_entry(name, sha256=sha256, size=size, uploaded_at=_iso(self._clock()))
        side_files = {
            entry.fingerprint: _render_side_file("fingerprint", fingerprint),
            entry.metadata: _render_side_file("metadata", metadata),
            entry.metrics: _render_side_file("metrics", metrics),
        }
        try:
            self.backend.put_file(entry.archive, archive)
            for key, data in side_files.items():
                self.backend.put_bytes(key, data)
            self._verify_sizes({entry.archive: size, **{k: len(v) for k, v in side_files.items()}})
        except StoreError:
            if previous is None or previous.entry(name) is None:
                self._delete_quietly(entry.stored_keys())
            raise
        manifest, pruned = add_entry(previous, entry, keep=keep)
        self.backend.put_bytes(MANIFEST_KEY, render_manifest(manifest))
        self._prune(pruned, manifest)
        return StoredModel(
            name=name,
            archive_key=entry.archive,
            sha256=sha256,
            size=size,
            uploaded_at=entry.uploaded_at,
            fingerprint=_plain(fingerprint),
            metadata=_plain(metadata),
            metrics=_plain(metrics),
            url=self.backend.describe(entry.archive),
        )

    def url_for(self, name: str) -> str:
        """URL of the archive of model ``name`` (whether or not it exists)."""
        return self.backend.describe(model_keys(name).archive)

    def _read_manifest(self) -> Manifest | None:
        try:
            data = self.backend.get_bytes(MANIFEST_KEY)
        except StoreNotFoundError:
            return None
        return parse_manifest(data, where=self.backend.describe(MANIFEST_KEY))

    def _require_entry(self, name: str) -> ManifestEntry:
        manifest = self._read_manifest()
        entry = manifest.entry(name) if manifest else None
        if entry is None:
            listed = [m.name for m in manifest.models] if manifest else []
            raise StoreNotFoundError(
                f"model {name!r} is not listed in the store manifest (listed: {listed})",
                location=self.backend.describe(MANIFEST_KEY),
                hint="use read_latest() to find the latest model's name",
            )
        return entry

    def _stored_model(self, entry: ManifestEntry) -> StoredModel:
        return StoredModel(
            name=entry.name,
            archive_key=entry.archive,
            sha256=entry.sha256,
            size=entry.size,
            uploaded_at=entry.uploaded_at,
            fingerprint=self._read_side_file(entry.fingerprint),
            metadata=self._read_side_file(entry.metadata),
            metrics=self._read_side_file(entry.metrics),
            url=self.backend.describe(entry.archive),
        )

    def _read_side_file(self, key: str) -> dict[str, Any]:
        where = self.backend.describe(key)
        try:
            raw = json.loads(self.backend.get_bytes(key).decode("utf-8"))
        except StoreNotFoundError as exc:
            raise StoreIntegrityError(
                f"{MANIFEST_KEY} lists {key}, but the store has no such file",
                location=where,
                hint="publish the model again, or repair the manifest",
            ) from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreIntegrityError(f"{key} is not valid JSON ({exc})", location=where) from exc
        if not isinstance(raw, dict):
            raise StoreIntegrityError(
                f"{key} must hold a JSON object, received {type(raw).__name__}", location=where
            )
        return raw

    def _verify_sizes(self, expected: dict[str, int]) -> None:
        for key, size in expected.items():
            try:
                stored = self.backend.size(key)
            except StoreNotFoundError as exc:
                raise StoreIntegrityError(
                    f"{key} is missing right after it was uploaded",
                    location=self.backend.describe(key),
                    hint="the store accepted the upload but does not serve it; check the server",
                ) from exc
            if stored is not None and stored != size:
                raise StoreIntegrityError(
                    f"{key} has {stored} bytes in the store after upload, expected {size}",
                    location=self.backend.describe(key),
                    hint="the upload was truncated; publish again",
                )

    def _prune(self, pruned: tuple[ManifestEntry, ...], manifest: Manifest) -> None:
        """Delete files of models dropped from the manifest; failures are not fatal."""
        in_use = {key for entry in manifest.models for key in entry.stored_keys()}
        for entry in pruned:
            self._delete_quietly(k for k in entry.stored_keys() if k not in in_use)

    def _delete_quietly(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.backend.delete(key)
            except StoreError:
                pass  # best effort: leftovers cost space, never correctness


def compute_sha256(path: Path) -> tuple[str, int]:
    """sha256 hex digest and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}", location=str(path)) from exc
    return digest.hexdigest(), size


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _render_side_file(what: str, data: dict[str, Any]) -> bytes:
    if not isinstance(data, dict):
        raise StoreError(f"{what} must be a dict, received {type(data).__name__}")
    try:
        return render_json(data)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"{what} cannot be stored as JSON: {exc}", hint="pass only JSON types"
        ) from exc


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """The dict as it reads back from the store (JSON round trip)."""
    result: dict[str, Any] = json.loads(render_json(data))
    return result
