"""ModelStore: publish, read and download models through any Backend."""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import BrokenModelError, StoreError, StoreIntegrityError, StoreNotFoundError
from pipeline.fingerprint import DeferredFingerprint
from pipeline.limits import DEFAULT_LIMITS, Limits
from pipeline.predictions import PREDICTIONS_KEY
from pipeline.sidefiles import SideFile, SideFileError, decode_side_file, describe_problem
from pipeline.stores.backend import (
    CAS_ATTEMPTS,
    Backend,
    ConditionalBackend,
    ListedKey,
    ListingBackend,
)
from pipeline.stores.layout import MANIFEST_KEY, MODELS_DIR, check_name, model_keys
from pipeline.stores.manifest import (
    HEAD_FIELD,
    Manifest,
    ManifestEntry,
    SUMMARY_FIELD,
    announce,
    build_entry,
    build_summary,
    commit_entry,
    find_stale,
    format_time,
    parse_manifest,
    render_json,
    render_manifest,
    withdraw,
)

_CHUNK = 1024 * 1024
T = TypeVar("T")

#: A run's announced upload older than this is taken for dead and its files deleted.
ORPHAN_GRACE = timedelta(hours=1)


class StoredMetrics(Mapping[str, Any]):
    """A stored model's metrics: the headline values at hand, the per-utterance predictions
    (``metrics[PREDICTIONS_KEY]``) read from ``metrics.json`` only when first asked for.

    Iterating lists the headline metrics only, so copying or filtering them never costs a
    read. Predictions that cannot be read count as not stored (``get`` gives None) and
    :attr:`problem` says why: the decision never depends on them, the prediction diff is
    then measured from the archive or left out.
    """

    def __init__(self, headline: Mapping[str, Any], load: Callable[[], Mapping[str, Any]] | None) -> None:
        self._headline = dict(headline)
        self._load = load
        self._predictions: Any = None
        self.problem: str | None = None

    def __getitem__(self, key: str) -> Any:
        if key in self._headline:
            return self._headline[key]
        if key == PREDICTIONS_KEY and self._predictions is not None:
            return self._predictions
        if key != PREDICTIONS_KEY or self._load is None:
            raise KeyError(key)
        load, self._load = self._load, None
        try:
            self._predictions = load().get(PREDICTIONS_KEY)
        except StoreError as exc:
            self.problem = exc.message
        if self._predictions is None:
            raise KeyError(key)
        return self._predictions

    @property
    def has_predictions(self) -> bool:
        """Whether ``metrics.json`` holds predictions (known without reading it)."""
        return self._load is not None or self._predictions is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._headline)

    def __len__(self) -> int:
        return len(self._headline)

    def __repr__(self) -> str:
        return f"StoredMetrics({self._headline!r}, predictions={'not read' if self._load else 'read'})"


@dataclass(frozen=True)
class StoredModel:
    """A model in the store, with its small side files already read."""

    name: str
    archive_key: str
    sha256: str
    size: int
    uploaded_at: str  # ISO 8601 UTC, e.g. "2024-05-01T12:00:00Z"
    fingerprint: Mapping[str, Any]  # DeferredFingerprint when read from a summary with a head
    metadata: dict[str, Any]
    metrics: Mapping[str, Any]  # StoredMetrics when read from the store
    url: str
    orphans_removed: tuple[str, ...] = ()  # publish only: models of failed runs cleaned up
    pruned: tuple[str, ...] = ()  # publish only: models dropped by --keep
    newer: tuple[str, ...] = ()  # read_latest only: listed models newer than latest (a rollback)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ModelStore:
    """Models plus a manifest that names the latest; the manifest is always written last."""

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Callable[[], datetime] = _utc_now,
        limits: Limits = DEFAULT_LIMITS,
        orphan_grace: timedelta = ORPHAN_GRACE,
        cas_attempts: int = CAS_ATTEMPTS,
    ) -> None:
        self.backend = backend
        self.url = backend.describe("")
        self.limits = limits
        self.orphan_grace = orphan_grace
        self.cas_attempts = cas_attempts
        self._clock = clock
        #: The last manifest read, by the backend's version token (conditional reads).
        self._cached: tuple[str, Manifest] | None = None

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
        newer = tuple(m.name for m in manifest.models[: manifest.models.index(entry)])
        return replace(self._stored_model(entry), newer=newer)

    def read_model(self, name: str) -> StoredModel:
        """A listed model with its side files (no archive download)."""
        return self._stored_model(self._require_entry(name))

    def rollback(self, name: str | None = None) -> tuple[str | None, StoredModel]:
        """Point ``latest`` at ``name`` (default: the model listed after the current latest);
        its archive and side files are checked first. Returns (previous latest, new latest)."""
        manifest = self._read_manifest()
        if manifest is None or manifest.latest is None:
            raise StoreNotFoundError(f"the store {self.url} has no models to roll back to",
                                     location=self.url,
                                     hint="check the --store URL (deltatrain store list --store URL shows its"
                                          " models); a store gets models from 'deltatrain ci'")
        if name is None:
            names = [m.name for m in manifest.models]
            position = names.index(manifest.latest)
            if position + 1 >= len(names):
                raise StoreError(
                    f"{manifest.latest!r} is the oldest model in the store; nothing to roll back to",
                    location=self.url, hint="name a model with `deltatrain store rollback NAME`",
                )
            name = names[position + 1]
        target = self.read_model(name)  # side files readable and well-formed
        self.check_archive(target)  # archive there with the listed size
        metrics = target.metrics
        summary = build_summary(
            target.fingerprint, target.metadata, dict(metrics),
            predictions=metrics.has_predictions if isinstance(metrics, StoredMetrics) else False,
        )

        def point(current: Manifest | None) -> tuple[Manifest, str | None]:
            entry = current.entry(name) if current else None
            if current is None or entry is None:
                raise StoreNotFoundError(f"model {name!r} left the store while rolling back",
                                         location=self.url)
            if entry.summary is None:  # latest carries the summary a skip decision reads
                models = tuple(replace(m, summary=summary) if m.name == name else m
                               for m in current.models)
                current = replace(current, models=models)
            return replace(current, latest=name), current.latest

        _, (_, before) = self._update_manifest(point)
        return before, target

    def collect_garbage(self) -> tuple[str, ...]:
        """Delete files of interrupted uploads (announced longer than the grace period ago, or
        unlisted model folders where the backend can list); return the model names cleaned."""

        def end_stale(current: Manifest | None) -> tuple[Manifest, tuple[str, ...]]:
            if current is None:
                return Manifest(latest=None, models=()), ()
            stale = find_stale(current, self._clock(), grace=self.orphan_grace)
            ended = {p.name for p in stale}
            kept = tuple(p for p in current.publishing if p.name not in ended)
            return replace(current, publishing=kept), tuple(sorted(ended))

        if self._read_manifest() is None:
            return self._sweep_unlisted(Manifest(latest=None, models=()))
        _, (written, stale) = self._update_manifest(end_stale)
        in_use = written.referenced_keys()
        orphans = tuple(n for n in stale if written.entry(n) is None)
        self._delete_quietly(k for n in orphans for k in model_keys(n).all() if k not in in_use)
        return orphans + self._sweep_unlisted(written)

    def download(self, name: str, dest_dir: Path) -> Path:
        """Download model ``name`` to ``dest_dir/<name>.tar.gz``; verify the manifest's sha256."""
        entry = self._require_entry(name)
        if entry.size > self.limits.max_extracted_bytes:
            raise BrokenModelError(
                f"archive of {name!r} is listed with {entry.size} bytes, more than the limit of"
                f" {self.limits.max_extracted_bytes}",
                model_name=name,
                location=self.backend.describe(entry.archive),
                hint="only publish models written by deltatrain",
            )
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
            try:
                self.backend.get_to_file(entry.archive, temp)
            except StoreNotFoundError as exc:
                raise BrokenModelError(
                    f"{MANIFEST_KEY} lists {entry.archive}, but the store has no such file",
                    model_name=name,
                    location=self.backend.describe(entry.archive),
                    hint="publish the model again, or repair the manifest",
                ) from exc
            sha256, size = compute_sha256(temp)
            if sha256 != entry.sha256 or size != entry.size:
                raise BrokenModelError(
                    f"downloaded archive of {name!r} does not match the manifest: expected sha256"
                    f" {entry.sha256} ({entry.size} bytes), received {sha256} ({size} bytes)",
                    model_name=name,
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
        committed_at: str | None = None,
    ) -> StoredModel:
        """Announce, upload archive and side files, verify, list the model last, then clean up.

        With ``committed_at`` (ISO 8601 UTC of the commit the model was built from, also in
        ``metadata["git"]["committed_at"]``) a model built from an older commit than the
        current latest is listed without becoming latest: when two pipelines race, latest
        ends up on the model of the newer commit, whichever run finishes last.

        Safe when several runs publish to one store at once: every manifest change is a
        compare-and-swap that re-reads and merges on conflict, models another run published
        meanwhile are never pruned, and files of runs that died (announced longer than the
        grace period ago, never listed) are deleted and named in ``orphans_removed``.
        """
        check_name(name)
        if keep < 1:
            raise StoreError(
                f"keep must be at least 1 (received {keep})", hint="keep at least the new model"
            )
        sha256, size = compute_sha256(archive)
        keys = model_keys(name)
        side_files = {
            keys.fingerprint: _render_side_file("fingerprint", fingerprint),
            keys.metadata: _render_side_file("metadata", metadata),
            keys.metrics: _render_side_file("metrics", metrics),
        }
        stored_metrics = json.loads(side_files[keys.metrics])
        summary = build_summary(
            json.loads(side_files[keys.fingerprint]), json.loads(side_files[keys.metadata]),
            {k: v for k, v in stored_metrics.items() if k != PREDICTIONS_KEY},
            predictions=PREDICTIONS_KEY in stored_metrics,
        )
        entry = build_entry(name, sha256=sha256, size=size, uploaded_at=format_time(self._clock()),
                            summary=summary)
        started = self._clock()
        before, _ = self._update_manifest(
            lambda m: (announce(m, name, started, grace=self.orphan_grace), None)
        )
        known = frozenset(m.name for m in before.models) if before else frozenset()
        try:
            self.backend.put_file(entry.archive, archive)
            for key, data in side_files.items():
                self.backend.put_bytes(key, data)
            self._verify_sizes({entry.archive: size, **{k: len(v) for k, v in side_files.items()}})
        except StoreError:
            self._give_up(name, entry, known)
            raise

        def commit(current: Manifest | None) -> tuple[Manifest, tuple[Any, Any]]:
            stale = find_stale(current, self._clock(), grace=self.orphan_grace) if current else ()
            stale = tuple(p for p in stale if p.name != name)
            current_names = {m.name for m in current.models} if current else set()
            protected = frozenset(current_names - known)
            manifest, pruned = commit_entry(
                current, entry, keep=keep, protected=protected, stale=stale
            )
            if current is not None and current.latest not in (None, name) and self._newer_than(
                current, committed_at
            ):
                # the latest stays first: models are listed newest commit first
                first = tuple(m for m in manifest.models if m.name == current.latest)
                rest = tuple(m for m in manifest.models if m.name != current.latest)
                manifest = replace(manifest, latest=current.latest, models=first + rest)
            return manifest, (pruned, stale)

        try:
            _, (written, (pruned, stale)) = self._update_manifest(commit)
        except StoreError:
            self._give_up(name, entry, known, check_listed=True)
            raise
        in_use = written.referenced_keys()
        self._delete_quietly(k for m in pruned for k in m.stored_keys() if k not in in_use)
        orphans = tuple(p.name for p in stale if written.entry(p.name) is None)
        self._delete_quietly(
            k for n in orphans for k in model_keys(n).all() if k not in in_use
        )
        orphans += self._sweep_unlisted(written)
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
            orphans_removed=orphans,
            pruned=tuple(m.name for m in pruned),
        )

    def _newer_than(self, current: Manifest, committed_at: str | None) -> bool:
        """Whether ``current``'s latest was built from a commit newer than ``committed_at``."""
        entry = current.entry(current.latest) if committed_at and current.latest else None
        if entry is None:
            return False
        try:
            theirs = (self._decode_summary(entry)[1] if entry.summary is not None
                      else self._read_side_file(entry, entry.metadata, SideFile.METADATA))
        except StoreError:
            return False  # an unreadable latest never outranks a fresh model
        their_time = (theirs.get("git") or {}).get("committed_at")
        return isinstance(their_time, str) and their_time > str(committed_at)

    def _sweep_unlisted(self, manifest: Manifest) -> tuple[str, ...]:
        """On backends that can list: delete model folders neither listed nor announced, whose
        files are all older than the grace period (left by older versions or lost manifests)."""
        if not isinstance(self.backend, ListingBackend):
            return ()
        try:
            listed = self.backend.list_keys(MODELS_DIR + "/")
        except StoreError:
            return ()  # best effort, like every clean-up
        busy = {m.name for m in manifest.models} | {p.name for p in manifest.publishing}
        cutoff = self._clock() - self.orphan_grace
        folders: dict[str, list[ListedKey]] = {}
        for item in listed:
            parts = item.key.split("/")
            if len(parts) >= 3 and parts[1] not in busy:
                folders.setdefault(parts[1], []).append(item)
        removed = []
        for name, items in sorted(folders.items()):
            if all(item.modified <= cutoff for item in items):
                self._delete_quietly(item.key for item in items)
                removed.append(name)
        return tuple(removed)

    def _update_manifest(
        self, change: Callable[[Manifest | None], tuple[Manifest, T]]
    ) -> tuple[Manifest | None, tuple[Manifest, T]]:
        """Compare-and-swap loop: read, ``change``, write if nobody wrote meanwhile, else retry.

        Returns the manifest it changed and ``change``'s result for the version that was
        written. A corrupt manifest is never overwritten (StoreIntegrityError).
        """
        where = self.backend.describe(MANIFEST_KEY)
        for attempt in range(self.cas_attempts):
            current = self.backend.get_versioned(MANIFEST_KEY, max_bytes=self.limits.max_json_bytes)
            manifest = parse_manifest(current.data, where=where) if current else None
            updated, extra = change(manifest)
            if self.backend.put_if_version(
                MANIFEST_KEY, render_manifest(updated), current.version if current else None
            ):
                return manifest, (updated, extra)
            time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
        raise StoreError(
            f"{MANIFEST_KEY} changed {self.cas_attempts} times while this run tried to update it",
            location=where,
            hint="other pipelines are publishing to the same store right now; run the job again",
        )

    def _give_up(
        self, name: str, entry: ManifestEntry, known: frozenset[str], *, check_listed: bool = False
    ) -> None:
        """After a failed publish: delete this run's files unless a listed model uses them."""
        try:
            if check_listed:
                manifest = self._read_manifest()
                if manifest is not None and manifest.entry(name) == entry:
                    return  # the write failed only in its answer: the model is listed
            if name not in known:
                self._delete_quietly(entry.stored_keys())
            self._update_manifest(lambda m: (withdraw(m, name), None))
        except StoreError:
            pass  # the announcement stays; the next publish removes the files after the grace period

    def url_for(self, name: str) -> str:
        """URL of the archive of model ``name`` (whether or not it exists)."""
        return self.backend.describe(model_keys(name).archive)

    def _read_manifest(self) -> Manifest | None:
        """The manifest; one conditional read on backends that offer it (unchanged: the parsed
        copy from the last read, nothing downloaded)."""
        where = self.backend.describe(MANIFEST_KEY)
        if not isinstance(self.backend, ConditionalBackend):
            try:
                data = self.backend.get_bytes(MANIFEST_KEY, max_bytes=self.limits.max_json_bytes)
            except StoreNotFoundError:
                return None
            return parse_manifest(data, where=where)
        cached = self._cached
        found = self.backend.get_if_changed(
            MANIFEST_KEY, cached[0] if cached else None, max_bytes=self.limits.max_json_bytes
        )
        if found is None:
            self._cached = None
            return None
        if found.data is None and cached is not None:
            return cached[1]
        if found.data is None:  # a backend must not answer "unchanged" to no token
            raise StoreError(f"{where} answered 'not modified' to an unconditional read",
                             location=where, hint="check the store server")
        manifest = parse_manifest(found.data, where=where)
        self._cached = (found.token, manifest) if found.token else None
        return manifest

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
        """The model with its fingerprint, metadata and metrics: from the manifest's inline
        summary when the entry has one (no further read), else from the side files."""
        fingerprint: Mapping[str, Any]
        if entry.summary is not None:
            fingerprint, metadata, metrics, predictions = self._decode_summary(entry)
            load = (lambda: self._read_side_file(entry, entry.metrics, SideFile.METRICS)) if predictions else None
            if HEAD_FIELD in entry.summary:
                fingerprint = DeferredFingerprint(
                    fingerprint, lambda: self._read_side_file(entry, entry.fingerprint, SideFile.FINGERPRINT))
        else:
            fingerprint = self._read_side_file(entry, entry.fingerprint, SideFile.FINGERPRINT)
            metadata = self._read_side_file(entry, entry.metadata, SideFile.METADATA)
            full = self._read_side_file(entry, entry.metrics, SideFile.METRICS)
            metrics = {k: v for k, v in full.items() if k != PREDICTIONS_KEY}
            load = (lambda: full) if PREDICTIONS_KEY in full else None
        return StoredModel(
            name=entry.name,
            archive_key=entry.archive,
            sha256=entry.sha256,
            size=entry.size,
            uploaded_at=entry.uploaded_at,
            fingerprint=fingerprint,
            metadata=metadata,
            metrics=StoredMetrics(metrics, load),
            url=self.backend.describe(entry.archive),
        )

    def _decode_summary(
        self, entry: ManifestEntry
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], bool]:
        """Check an entry's inline summary as the side files are checked; BrokenModelError if unusable."""
        where = f"{self.backend.describe(MANIFEST_KEY)} (models[{entry.name}].{SUMMARY_FIELD})"
        summary = entry.summary
        problem = None
        head = HEAD_FIELD if isinstance(summary, dict) and HEAD_FIELD in summary else "fingerprint"
        if not isinstance(summary, dict):
            problem = f"{SUMMARY_FIELD} must be an object, received {type(summary).__name__}"
        elif not isinstance(summary.get("predictions", False), bool):
            problem = f"{SUMMARY_FIELD}.predictions must be true or false, received {summary['predictions']!r}"
        else:
            for part, kind in ((head, SideFile.FINGERPRINT), ("metadata", SideFile.METADATA),
                               ("metrics", SideFile.METRICS)):
                problem = describe_problem(kind, summary.get(part))
                if problem is not None:
                    problem = f"{SUMMARY_FIELD}.{part} ({kind.value}): {problem}"
                    break
        if problem is not None:
            raise BrokenModelError(problem, model_name=entry.name, location=where,
                                   hint="the manifest was edited or damaged; publish the model again,"
                                   " or roll back to another model")
        assert isinstance(summary, dict)
        return (summary[head], summary["metadata"], summary["metrics"],
                bool(summary.get("predictions", False)))

    def _read_side_file(self, entry: ManifestEntry, key: str, kind: SideFile) -> dict[str, Any]:
        where = self.backend.describe(key)
        try:
            data = self.backend.get_bytes(key, max_bytes=self.limits.max_json_bytes)
        except StoreNotFoundError as exc:
            raise BrokenModelError(
                f"{MANIFEST_KEY} lists {key}, but the store has no such file",
                model_name=entry.name,
                location=where,
                hint="publish the model again, or repair the manifest",
            ) from exc
        except StoreIntegrityError as exc:  # larger than the limit
            raise BrokenModelError(exc.message, model_name=entry.name, location=where,
                                   hint=exc.hint) from exc
        try:
            return decode_side_file(kind, data, max_bytes=self.limits.max_json_bytes)
        except SideFileError as exc:
            raise BrokenModelError(
                str(exc),
                model_name=entry.name,
                location=where,
                hint="the file was edited or damaged; publish the model again",
            ) from exc

    def check_archive(self, stored: StoredModel) -> None:
        """Cheap check (no download) that ``stored``'s archive exists with the listed size."""
        try:
            size = self.backend.size(stored.archive_key)
        except StoreNotFoundError as exc:
            raise BrokenModelError(
                f"{MANIFEST_KEY} lists {stored.archive_key}, but the store has no such file",
                model_name=stored.name,
                location=self.backend.describe(stored.archive_key),
                hint="publish the model again, or repair the manifest",
            ) from exc
        if size is not None and size != stored.size:
            raise BrokenModelError(
                f"archive of {stored.name!r} has {size} bytes, the manifest lists {stored.size}",
                model_name=stored.name,
                location=self.backend.describe(stored.archive_key),
                hint="the stored archive is damaged or was replaced; publish the model again",
            )

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
