"""Where things live inside a model store, relative to the store root.

::

    manifest.json                       points at the latest model; written last
    models/<name>/model.tar.gz          the archive
    models/<name>/fingerprint.json
    models/<name>/metadata.json
    models/<name>/metrics.json

Keys are POSIX-style relative paths. Every backend maps a key onto its own
namespace (a folder, a base URL, a bucket prefix).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import StoreError

MANIFEST_KEY = "manifest.json"
MODELS_DIR = "models"
ARCHIVE_FILE = "model.tar.gz"
FINGERPRINT_FILE = "fingerprint.json"
METADATA_FILE = "metadata.json"
METRICS_FILE = "metrics.json"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY_PART_RE = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ModelKeys:
    """The four keys one stored model occupies."""

    archive: str
    fingerprint: str
    metadata: str
    metrics: str

    def all(self) -> tuple[str, ...]:
        """All keys, archive first."""
        return (self.archive, self.fingerprint, self.metadata, self.metrics)


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise StoreError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise StoreError(
            f"invalid model name {name!r}",
            hint="use 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
            f" (received {name!r})",
        )
    return name


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative store key, else raise StoreError."""
    parts = key.split("/") if isinstance(key, str) else []
    if not parts or any(p in ("", ".", "..") or not _KEY_PART_RE.fullmatch(p) for p in parts):
        raise StoreError(
            f"invalid store key {key!r}",
            hint="keys are relative paths like models/<name>/model.tar.gz without '..' or"
            f" empty parts (received {key!r})",
        )
    return key


def model_keys(name: str) -> ModelKeys:
    """Compute the keys of the model called ``name``."""
    prefix = f"{MODELS_DIR}/{check_name(name)}/"
    return ModelKeys(
        archive=prefix + ARCHIVE_FILE,
        fingerprint=prefix + FINGERPRINT_FILE,
        metadata=prefix + METADATA_FILE,
        metrics=prefix + METRICS_FILE,
    )
