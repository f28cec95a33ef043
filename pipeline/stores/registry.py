"""Pick a backend by URL scheme; backend modules are imported only when used."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from pipeline.errors import StoreError
from pipeline.stores.backend import Backend, BackendOptions
from pipeline.stores.model_store import ModelStore

#: Where the store lives when no URL is given, relative to ``base_dir``.
DEFAULT_STORE_DIR = Path(".deltatrain") / "store"

#: URL scheme -> module with ``open_backend(url, options) -> Backend``.
BACKENDS: dict[str, str] = {
    "file": "pipeline.stores.local",
    "http": "pipeline.stores.http",
    "https": "pipeline.stores.http",
    "s3": "pipeline.stores.s3",
    "github": "pipeline.stores.github",
    "gitlab": "pipeline.stores.gitlab",
}

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")


def open_store(
    url: str | None,
    *,
    base_dir: Path,
    token: str | None = None,
    s3_endpoint_url: str | None = None,
) -> ModelStore:
    """Open the model store at ``url`` (None: the local folder ``base_dir/.deltatrain/store``)."""
    options = BackendOptions(
        base_dir=Path(base_dir), token=token or None, s3_endpoint_url=s3_endpoint_url or None
    )
    if url is None or not url.strip():
        return ModelStore(_factory("file")(str(Path(base_dir) / DEFAULT_STORE_DIR), options))
    url = url.strip()
    scheme = match.group(1).lower() if (match := _SCHEME_RE.match(url)) else "file"
    if scheme not in BACKENDS:
        raise StoreError(
            f"unsupported model store URL scheme {scheme!r}",
            hint=f"use a path, or a URL starting with {', '.join(s + '://' for s in BACKENDS)}"
            f" (received {_redact(url)!r})",
        )
    return ModelStore(_factory(scheme)(url, options))


def _factory(scheme: str) -> Callable[[str, BackendOptions], Backend]:
    module = importlib.import_module(BACKENDS[scheme])
    return cast(Callable[[str, BackendOptions], Backend], module.open_backend)


def _redact(url: str) -> str:
    """The URL without user:password@ so it is safe to show."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
