"""LoadedModel: one model archive read into memory, ready to parse and predict (NumPy only)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from pipeline.archive import CORE_DIR, NLU_DIR, extract_archive, model_name_of, read_archive_json
from pipeline.errors import ModelError
from pipeline.training.core import CoreModel
from pipeline.training.nlu import NluModel

#: What warms a freshly loaded model up (pretrained weights, caches) before it is swapped in.
WARMUP_TEXT = "hello there"


@dataclass(frozen=True)
class LoadedModel:
    """A model in memory with what ``/status`` reports about it."""

    name: str
    key: str  # what identifies this exact model (sha256 of the archive)
    nlu: NluModel | None
    core: CoreModel | None
    metadata: Mapping[str, Any]
    fingerprint: Mapping[str, Any]
    metrics: Mapping[str, Any]
    source: str
    loaded_at: str
    load_seconds: float
    sha256: str
    fetch_seconds: float = 0.0  # download and sha256 check before the load (0 for a local archive)

    @property
    def model_id(self) -> str:
        """A short content id of the data the model was trained on (sha256 of its fingerprint sections)."""
        sections = self.fingerprint.get("sections", {})
        canonical = json.dumps(sections, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]

    def describe(self) -> dict[str, Any]:
        """What ``/status`` shows about this model."""
        raw = self.metadata.get("parts")
        parts: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        return {
            "name": self.name,
            "model_id": self.model_id,
            "sha256": self.sha256,
            "source": self.source,
            "trained_at": self.metadata.get("trained_at"),
            "mode": self.metadata.get("mode"),
            "parts": {k: v.get("action") for k, v in parts.items() if isinstance(v, Mapping)},
            "finetuned_from": (self.metadata.get("finetuned_from") or {}).get("name"),
            "deltatrain_version": self.metadata.get("deltatrain_version"),
            "fingerprint": dict(self.fingerprint.get("sections", {})),
            "metrics": dict(self.metrics),
            "loaded_at": self.loaded_at,
            "load_seconds": round(self.load_seconds, 3),
            "fetch_seconds": round(self.fetch_seconds, 3),
            "nlu": self.nlu is not None,
            "core": self.core is not None,
        }


def compute_file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def load_model_archive(
    path: Path, *, source: str, metrics: Mapping[str, Any] | None = None, sha256: str | None = None,
    now: datetime | None = None,
) -> LoadedModel:
    """Read an archive into memory and warm it up; ArchiveError/ModelError when it is unusable."""
    import time

    started = time.perf_counter()
    path = Path(path)
    metadata, fingerprint = read_archive_json(path)
    digest = sha256 or compute_file_sha256(path)
    with tempfile.TemporaryDirectory(prefix="deltatrain-serve-") as tmp:
        root = extract_archive(path, Path(tmp))
        nlu = NluModel.load(root / NLU_DIR) if (root / NLU_DIR).is_dir() else None
        core = CoreModel.load(root / CORE_DIR) if (root / CORE_DIR).is_dir() else None
    if nlu is None:
        raise ModelError(
            "the archive has no NLU model (nlu/), so it cannot parse messages",
            location=str(path), hint="serve a model trained with NLU data",
        )
    try:
        nlu.parse(WARMUP_TEXT)  # loads shared pretrained weights now, not on the first request
    except (ValueError, IndexError, KeyError) as exc:
        raise ModelError(f"the NLU model cannot parse a message ({exc!r})", location=str(path),
                         hint="train the model again") from exc
    return LoadedModel(
        name=str(metadata.get("name") or model_name_of(path)),
        key=digest,
        nlu=nlu,
        core=core,
        metadata=metadata,
        fingerprint=fingerprint,
        metrics=dict(metrics or {}),
        source=source,
        loaded_at=(now or datetime.now(timezone.utc)).replace(microsecond=0).isoformat(),
        load_seconds=time.perf_counter() - started,
        sha256=digest,
    )
