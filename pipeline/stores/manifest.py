"""The store manifest: parse, validate, build and render (pure functions).

``manifest.json`` looks like::

    {"format": 1, "latest": "<name>" | null,
     "models": [{"name", "archive", "sha256", "size", "uploaded_at",
                 "fingerprint", "metadata", "metrics",           # keys of the side files
                 "summary": {...}}, ...],                        # latest only; newest first
     "publishing": [{"name", "started_at"}, ...]}               # only while uploads run

``summary`` is a copy of the latest model's fingerprint head (the section hashes, labels
and names, without the per-example and per-story digests, which a reader loads from
``fingerprint.json`` only when their section changed), metadata and metrics (without
the per-utterance predictions, which stay in ``metrics.json``), so that a skip decision
reads the manifest and nothing else, and the manifest stays a few KiB even for a
10,000-example assistant. Only the entry ``latest`` names
carries one (:meth:`Manifest.to_dict` drops the others, keeping the manifest one
fingerprint large); an entry without one (an older deltatrain wrote it, or latest
moved) is read from its side files, which are always written in full.

``publishing`` lists models whose files are being uploaded. A publisher adds its
model there before the first upload and moves it to ``models`` with its final
write; an announcement left behind by a run that died or could not write the
manifest marks orphaned files, which the next publish deletes once the grace
period has passed (never those of a run still uploading).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from collections.abc import Mapping
from typing import Any

from pipeline.errors import StoreError, StoreIntegrityError
from pipeline.fingerprint import DETAIL_SECTIONS, DeferredFingerprint
from pipeline.stores.layout import MANIFEST_KEY, check_key, check_name, model_keys

MANIFEST_FORMAT = 1

#: The entry field holding the inline copy of the side files.
SUMMARY_FIELD = "summary"
#: The summary's fingerprint without its per-item digests. The name differs from the side file's
#: (``fingerprint``, the whole one, in the first summaries, still read) so that an older reader
#: finds no fingerprint in a new summary and retrains in full instead of misreading the head.
HEAD_FIELD = "fingerprint_head"

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_ENTRY_FIELDS = (
    "name",
    "archive",
    "sha256",
    "size",
    "uploaded_at",
    "fingerprint",
    "metadata",
    "metrics",
)


@dataclass(frozen=True)
class ManifestEntry:
    """One model listed in the manifest; keys are relative to the store root."""

    name: str
    archive: str
    sha256: str
    size: int
    uploaded_at: str
    fingerprint: str
    metadata: str
    metrics: str
    #: The inline copy of the side files (see :class:`Summary`), as read: checked when used.
    summary: Any = field(default=None, compare=False)

    def stored_keys(self) -> tuple[str, ...]:
        """Every key this entry references, archive first."""
        return (self.archive, self.fingerprint, self.metadata, self.metrics)

    def to_dict(self, *, with_summary: bool = True) -> dict[str, Any]:
        """The JSON form of this entry (the summary only when asked for and present)."""
        data = {name: getattr(self, name) for name in _ENTRY_FIELDS}
        if with_summary and self.summary is not None:
            data[SUMMARY_FIELD] = self.summary
        return data


@dataclass(frozen=True)
class Publishing:
    """A model whose files a run is uploading; listed until it is in ``models``."""

    name: str
    started_at: str  # ISO 8601 UTC

    def started(self) -> datetime:
        """``started_at`` as a datetime (validated by parse_manifest)."""
        return datetime.fromisoformat(self.started_at)


@dataclass(frozen=True)
class Manifest:
    """The whole manifest; ``models`` is newest first."""

    latest: str | None
    models: tuple[ManifestEntry, ...]
    publishing: tuple[Publishing, ...] = ()

    def entry(self, name: str) -> ManifestEntry | None:
        """The entry called ``name``, or None."""
        return next((m for m in self.models if m.name == name), None)

    def referenced_keys(self) -> frozenset[str]:
        """Every key a listed model uses."""
        return frozenset(key for entry in self.models for key in entry.stored_keys())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this manifest (``publishing`` only while it is not empty)."""
        data: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "latest": self.latest,
            "models": [m.to_dict(with_summary=m.name == self.latest) for m in self.models],
        }
        if self.publishing:
            data["publishing"] = [
                {"name": p.name, "started_at": p.started_at} for p in self.publishing
            ]
        return data


def build_summary(
    fingerprint: Mapping[str, Any], metadata: dict[str, Any], headline: dict[str, Any], *, predictions: bool
) -> dict[str, Any]:
    """The inline copy of a model's side files: the fingerprint without its per-item digests
    (``fingerprint_head``), metadata, the metrics without the stored predictions, and whether
    ``metrics.json`` holds predictions."""
    head = (fingerprint.head if isinstance(fingerprint, DeferredFingerprint)
            else {k: v for k, v in fingerprint.items() if k not in DETAIL_SECTIONS})
    return {HEAD_FIELD: head, "metadata": metadata, "metrics": headline, "predictions": predictions}


def build_entry(
    name: str, *, sha256: str, size: int, uploaded_at: str, summary: dict[str, Any] | None = None
) -> ManifestEntry:
    """Build the entry for a model stored under the standard layout."""
    keys = model_keys(name)
    return ManifestEntry(
        name=name,
        archive=keys.archive,
        sha256=sha256,
        size=size,
        uploaded_at=uploaded_at,
        fingerprint=keys.fingerprint,
        metadata=keys.metadata,
        metrics=keys.metrics,
        summary=summary,
    )


def add_entry(
    manifest: Manifest | None, entry: ManifestEntry, *, keep: int
) -> tuple[Manifest, tuple[ManifestEntry, ...]]:
    """Put ``entry`` first and latest, keep ``keep`` models; return (manifest, pruned entries).

    An older entry with the same name is replaced, not pruned (its keys are reused).
    """
    if keep < 1:
        raise StoreError(f"keep must be at least 1 (received {keep})", hint="pass keep=1 or more")
    older = [m for m in (manifest.models if manifest else ()) if m.name != entry.name]
    models = (entry, *older)
    kept, pruned = models[:keep], models[keep:]
    return Manifest(latest=entry.name, models=kept), pruned


def announce(manifest: Manifest | None, name: str, started_at: datetime, *, grace: timedelta) -> Manifest:
    """Add ``name`` to ``publishing``; StoreError while another run publishes that name."""
    manifest = manifest or Manifest(latest=None, models=())
    other = next((p for p in manifest.publishing if p.name == name), None)
    if other is not None and started_at - other.started() < grace:
        raise StoreError(
            f"another run is publishing a model called {name!r} right now (since {other.started_at})",
            hint="give each run its own model name; if that run died, its announcement expires"
            f" after {grace}",
        )
    publishing = tuple(p for p in manifest.publishing if p.name != name)
    return replace(manifest, publishing=(*publishing, Publishing(name, format_time(started_at))))


def withdraw(manifest: Manifest | None, name: str) -> Manifest:
    """Remove ``name`` from ``publishing`` (a failed upload gives up its announcement)."""
    manifest = manifest or Manifest(latest=None, models=())
    return replace(manifest, publishing=tuple(p for p in manifest.publishing if p.name != name))


def find_stale(manifest: Manifest, now: datetime, *, grace: timedelta) -> tuple[Publishing, ...]:
    """Announcements older than ``grace``: runs that died or could not write the manifest."""
    return tuple(p for p in manifest.publishing if now - p.started() >= grace)


def commit_entry(
    manifest: Manifest | None,
    entry: ManifestEntry,
    *,
    keep: int,
    protected: frozenset[str] = frozenset(),
    stale: tuple[Publishing, ...] = (),
) -> tuple[Manifest, tuple[ManifestEntry, ...]]:
    """List ``entry`` first and latest, end its announcement and the ``stale`` ones, keep ``keep``.

    Entries named in ``protected`` (published by another run while this one uploaded)
    are never pruned, even when that keeps more than ``keep`` models for a while.
    Returns (manifest, pruned entries).
    """
    added, pruned = add_entry(manifest, entry, keep=keep)
    spared = tuple(m for m in pruned if m.name in protected)
    ended = {entry.name, *(p.name for p in stale)}
    publishing = tuple(p for p in (manifest.publishing if manifest else ()) if p.name not in ended)
    result = Manifest(latest=added.latest, models=(*added.models, *spared), publishing=publishing)
    return result, tuple(m for m in pruned if m.name not in protected)


def format_time(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z``, to the second."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def render_manifest(manifest: Manifest) -> bytes:
    """Serialise a manifest as canonical, human-readable JSON."""
    return render_json(manifest.to_dict())


def render_json(data: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def parse_manifest(data: bytes, *, where: str) -> Manifest:
    """Parse and validate manifest bytes read from ``where``; StoreIntegrityError if corrupt."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(where, f"not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise _corrupt(where, f"expected a JSON object, received {type(raw).__name__}")
    if raw.get("format") != MANIFEST_FORMAT:
        raise StoreIntegrityError(
            f"unsupported manifest format {raw.get('format')!r} (this deltatrain reads format"
            f" {MANIFEST_FORMAT})",
            location=where,
            hint="upgrade deltatrain if a newer version wrote this store, or use another store URL",
        )
    models_raw = raw.get("models")
    if not isinstance(models_raw, list):
        raise _corrupt(where, f"'models' must be a list, received {type(models_raw).__name__}")
    models = tuple(_parse_entry(item, index, where) for index, item in enumerate(models_raw))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise _corrupt(where, f"duplicate model names in 'models': {names}")
    latest = raw.get("latest")
    if latest is not None and latest not in names:
        raise _corrupt(where, f"'latest' is {latest!r}, which is not listed in 'models' {names}")
    publishing = _parse_publishing(raw.get("publishing", []), where)
    return Manifest(latest=latest, models=models, publishing=publishing)


def _parse_publishing(value: Any, where: str) -> tuple[Publishing, ...]:
    if not isinstance(value, list):
        raise _corrupt(where, f"'publishing' must be a list, received {type(value).__name__}")
    result = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(f), str) for f in ("name", "started_at")
        ):
            raise _corrupt(where, f"publishing[{index}] must be {{name, started_at}}, received {item!r}")
        try:
            check_name(item["name"])
            started = datetime.fromisoformat(item["started_at"])
        except (StoreError, ValueError) as exc:
            raise _corrupt(where, f"publishing[{index}] is invalid: {item!r}") from exc
        if started.tzinfo is None:
            raise _corrupt(where, f"publishing[{index}].started_at has no time zone: {item!r}")
        result.append(Publishing(item["name"], item["started_at"]))
    return tuple(result)


def _parse_entry(item: Any, index: int, where: str) -> ManifestEntry:
    if not isinstance(item, dict):
        raise _corrupt(where, f"models[{index}] must be an object, received {type(item).__name__}")
    missing = [f for f in _ENTRY_FIELDS if f not in item]
    if missing:
        raise _corrupt(where, f"models[{index}] lacks {', '.join(missing)}")
    for name in _ENTRY_FIELDS:
        expected = int if name == "size" else str
        value = item[name]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise _corrupt(
                where, f"models[{index}].{name} must be {expected.__name__}, received {value!r}"
            )
    if not _SHA256_RE.fullmatch(item["sha256"]):
        raise _corrupt(
            where, f"models[{index}].sha256 is not a sha256 hex digest: {item['sha256']!r}"
        )
    if item["size"] < 0:
        raise _corrupt(where, f"models[{index}].size is negative: {item['size']}")
    try:
        check_name(item["name"])
        for name in ("archive", "fingerprint", "metadata", "metrics"):
            check_key(item[name])
    except StoreError as exc:
        raise _corrupt(where, f"models[{index}]: {exc.message}") from exc
    return ManifestEntry(**{name: item[name] for name in _ENTRY_FIELDS}, summary=item.get(SUMMARY_FIELD))


def _corrupt(where: str, detail: str) -> StoreIntegrityError:
    return StoreIntegrityError(
        f"corrupt {MANIFEST_KEY}: {detail}",
        location=where,
        hint=f"repair or delete {MANIFEST_KEY} (a store without one reads as empty)",
    )
