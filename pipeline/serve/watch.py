"""Has the store's manifest changed? Cheap conditional reads per backend.

An adapter over :mod:`pipeline.stores` (used read-only): a local store is
checked with one ``stat`` of ``manifest.json``, an HTTP store with a
conditional ``GET`` (``If-None-Match`` with the last ETag, answered ``304``
when unchanged), S3 and the forges through their backend's ``get_if_changed``
(:class:`pipeline.stores.backend.ConditionalBackend`), and any other backend by
reading the manifest and comparing its sha256.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Protocol

from pipeline.errors import StoreAuthError, StoreError, StoreNotFoundError
from pipeline.stores.backend import ConditionalBackend
from pipeline.stores.layout import MANIFEST_KEY
from pipeline.stores.model_store import ModelStore


@dataclass(frozen=True)
class ManifestRead:
    """The outcome of one check: ``data`` is None when the manifest is unchanged (or absent)."""

    token: str | None  # what identifies this version (stat, ETag or sha256); None: no manifest
    data: bytes | None
    changed: bool


class ManifestWatcher(Protocol):
    """Reads the manifest only when it changed since ``token``."""

    def read(self, token: str | None) -> ManifestRead:
        """The manifest if it changed since ``token``."""
        ...


class ContentWatcher:
    """Any backend: read the manifest and compare its sha256."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def read(self, token: str | None) -> ManifestRead:
        """GET the manifest; changed when its sha256 differs from ``token``."""
        try:
            data = self.store.backend.get_bytes(MANIFEST_KEY)
        except StoreNotFoundError:
            return ManifestRead(None, None, token is not None)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return ManifestRead(digest, data if digest != token else None, digest != token)


class LocalWatcher:
    """A folder store: ``stat`` the manifest; read it only when inode, size or mtime moved."""

    def __init__(self, store: ModelStore, root: str) -> None:
        self.store = store
        self.path = os.path.join(root, MANIFEST_KEY)

    def read(self, token: str | None) -> ManifestRead:
        """Stat, then read when the stat token differs."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return ManifestRead(None, None, token is not None)
        except OSError as exc:
            raise StoreError(f"cannot stat {self.path}: {exc.strerror}", location=self.path) from exc
        current = f"stat:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
        if current == token:
            return ManifestRead(current, None, False)
        return ManifestRead(current, self.store.backend.get_bytes(MANIFEST_KEY), True)


class HttpWatcher:
    """An HTTP store: conditional GET with the last ETag; servers without ETags fall back to sha256."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        import requests

        self.url = url
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "deltatrain-serve"
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def read(self, token: str | None) -> ManifestRead:
        """GET with If-None-Match; 304 means unchanged."""
        import requests

        headers = {"If-None-Match": token[len("etag:"):]} if token and token.startswith("etag:") else {}
        try:
            response = self._session.get(self.url, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise StoreError(f"GET {self.url} failed: {type(exc).__name__}", location=self.url,
                             hint="check that the store server is reachable") from exc
        with response:
            if response.status_code == 304:
                return ManifestRead(token, None, False)
            if response.status_code == 404:
                return ManifestRead(None, None, token is not None)
            if response.status_code in (401, 403):
                raise StoreAuthError(f"the store refused the manifest read ({response.status_code})",
                                     location=self.url, hint="check DELTATRAIN_STORE_TOKEN")
            if response.status_code >= 400:
                raise StoreError(f"GET {self.url} answered {response.status_code}", location=self.url)
            data = response.content
            etag = response.headers.get("ETag")
        current = f"etag:{etag}" if etag else "sha256:" + hashlib.sha256(data).hexdigest()
        return ManifestRead(current, data if current != token else None, current != token)


class ConditionalWatcher:
    """Any backend with ``get_if_changed`` (S3, GitHub, GitLab): its own conditional read."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def read(self, token: str | None) -> ManifestRead:
        """The backend's conditional read; servers without version tokens fall back to sha256."""
        backend = self.store.backend
        assert isinstance(backend, ConditionalBackend)
        mine = token[len("cond:"):] if token and token.startswith("cond:") else None
        found = backend.get_if_changed(MANIFEST_KEY, mine)
        if found is None:
            return ManifestRead(None, None, token is not None)
        if found.data is None:
            return ManifestRead(token, None, False)
        current = f"cond:{found.token}" if found.token else "sha256:" + hashlib.sha256(found.data).hexdigest()
        return ManifestRead(current, found.data if current != token else None, current != token)


def build_watcher(store: ModelStore, token: str | None) -> ManifestWatcher:
    """The cheapest watcher the store's backend allows."""
    root = getattr(store.backend, "root", None)
    if store.url.startswith("file:") and root is not None:
        return LocalWatcher(store, str(root))
    if store.url.startswith(("http://", "https://")):
        return HttpWatcher(store.backend.describe(MANIFEST_KEY), token)
    if isinstance(store.backend, ConditionalBackend):
        return ConditionalWatcher(store)
    return ContentWatcher(store)
