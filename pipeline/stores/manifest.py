"""The store manifest: parse, validate, build and render (pure functions).

``manifest.json`` looks like::

    {"format": 1, "latest": "<name>" | null,
     "models": [{"name", "archive", "sha256", "size", "uploaded_at",
                 "fingerprint", "metadata", "metrics"}, ...]}   # newest first
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pipeline.errors import StoreError, StoreIntegrityError
from pipeline.stores.layout import MANIFEST_KEY, check_key, check_name, model_keys

MANIFEST_FORMAT = 1

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

    def stored_keys(self) -> tuple[str, ...]:
        """Every key this entry references, archive first."""
        return (self.archive, self.fingerprint, self.metadata, self.metrics)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this entry."""
        return {field: getattr(self, field) for field in _ENTRY_FIELDS}


@dataclass(frozen=True)
class Manifest:
    """The whole manifest; ``models`` is newest first."""

    latest: str | None
    models: tuple[ManifestEntry, ...]

    def entry(self, name: str) -> ManifestEntry | None:
        """The entry called ``name``, or None."""
        return next((m for m in self.models if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this manifest."""
        return {
            "format": MANIFEST_FORMAT,
            "latest": self.latest,
            "models": [m.to_dict() for m in self.models],
        }


def build_entry(name: str, *, sha256: str, size: int, uploaded_at: str) -> ManifestEntry:
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
    return Manifest(latest=latest, models=models)


def _parse_entry(item: Any, index: int, where: str) -> ManifestEntry:
    if not isinstance(item, dict):
        raise _corrupt(where, f"models[{index}] must be an object, received {type(item).__name__}")
    missing = [f for f in _ENTRY_FIELDS if f not in item]
    if missing:
        raise _corrupt(where, f"models[{index}] lacks {', '.join(missing)}")
    for field in _ENTRY_FIELDS:
        expected = int if field == "size" else str
        value = item[field]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise _corrupt(
                where, f"models[{index}].{field} must be {expected.__name__}, received {value!r}"
            )
    if not _SHA256_RE.fullmatch(item["sha256"]):
        raise _corrupt(
            where, f"models[{index}].sha256 is not a sha256 hex digest: {item['sha256']!r}"
        )
    if item["size"] < 0:
        raise _corrupt(where, f"models[{index}].size is negative: {item['size']}")
    try:
        check_name(item["name"])
        for field in ("archive", "fingerprint", "metadata", "metrics"):
            check_key(item[field])
    except StoreError as exc:
        raise _corrupt(where, f"models[{index}]: {exc.message}") from exc
    return ManifestEntry(**{field: item[field] for field in _ENTRY_FIELDS})


def _corrupt(where: str, detail: str) -> StoreIntegrityError:
    return StoreIntegrityError(
        f"corrupt {MANIFEST_KEY}: {detail}",
        location=where,
        hint=f"repair or delete {MANIFEST_KEY} (a store without one reads as empty)",
    )
