"""Model store on GitHub Releases: ``github://OWNER/REPO[/TAG]``, token from ``GITHUB_TOKEN``.

Every store file is an asset of one dedicated release (tag ``deltatrain-models``
unless the URL names another), created on first write as a pre-release with
``make_latest: "false"`` so it never becomes the project's "Latest release".
Keys are flattened into asset names (``models/x/model.tar.gz`` ->
``models--x--model.tar.gz``); assets are uploaded through the release's
``upload_url`` (uploads.github.com), listed page by page, and replaced by
delete + upload, since an asset name can exist only once per release.

Compare-and-swap on the manifest
--------------------------------
Assets have no ETag/If-Match on write, and neither release bodies nor git refs
offer a real compare-and-swap through the REST API (``PATCH .../git/refs`` with
``force: false`` only refuses non-fast-forwards). What GitHub *does* guarantee
atomically is that an asset name is unique within a release: a second upload of
the same name is refused with 422 ``already_exists``. So the manifest is a chain
of immutable generations ``manifest.<n>.json``:

* read: list the assets, take the highest ``n`` that finished uploading, download it;
  its version is ``n``;
* write at version ``n``: upload ``manifest.<n+1>.json``; 201 means we won, 422 means
  another writer published generation ``n+1`` first (False: re-read, merge, retry);
* a failed upload can leave an empty asset in state ``starter`` holding the name; readers
  skip it and the next writer deletes it;
* old generations (all but the newest three) are deleted by the writer afterwards;
  a reader that loses the race with that deletion simply reads again.

A retried upload whose first try did succeed answers 422 too; ModelStore then
re-reads, finds its own change and writes it once more (idempotent merge).

Reading the manifest in one request
-----------------------------------
The release JSON (``GET /releases/tags/TAG``) embeds the release's assets, so one
conditional request (``If-None-Match`` with the last ETag; 304 when nothing
changed) gives the asset listing: the newest manifest generation and every model
file's size, which also answers ``check_archive`` without another request. The
writer that wins generation ``n`` copies it into the release body afterwards, marked
with ``n`` and the asset's id; a reader uses that copy only when it names the newest
generation's asset in the same response, and downloads the asset otherwise (the
copy is late, lost to a crash, or too long for a release body: 125,000 characters).
The body is a cache: the generation assets alone decide the compare-and-swap.

A skip decision therefore costs one request while the manifest fits the release
body, else three (the release, the asset API call and its redirect to the file).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from pipeline.errors import StoreError, StoreNotFoundError
from pipeline.stores.backend import BackendOptions, Conditional, ListedKey, Versioned, too_large
from pipeline.stores.forge import (
    FORGE_RETRY,
    MANIFEST_FILE_RE,
    PAGE_SIZE,
    ForgeClient,
    _origin,
    flatten,
    forge_retry,
    model_key_of,
    ReplacingWrites,
    parse_time,
)
from pipeline.stores.http import RetryPolicy
from pipeline.stores.layout import MANIFEST_KEY, check_key

TOKEN_ENV = "GITHUB_TOKEN"
API_URL_ENV = "GITHUB_API_URL"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_TAG = "deltatrain-models"
API_VERSION = "2022-11-28"
#: Manifest generations kept besides the newest (for readers that listed a moment ago).
KEEP_GENERATIONS = 3
#: GitHub refuses release bodies longer than this many characters.
MAX_BODY_CHARS = 125_000
RELEASE_BODY = "Models trained by deltatrain (a model store; not a product release)."
_MIRROR_RE = re.compile(r"<!-- deltatrain-manifest generation=(\d+) asset=(\d+)\r?\n(.*?)\r?\n-->", re.S)
_URL_RE = re.compile(r"github://([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)(?:/([^/?#\s]+))?/?")


@dataclass(frozen=True)
class Asset:
    """One release asset as the API lists it."""

    id: int
    name: str
    size: int
    state: str
    updated_at: str
    url: str


class GitHubReleasesBackend(ReplacingWrites):
    """Store keys as assets of one release; the manifest is a chain of immutable generations."""

    #: A release JSON embedding this many assets may have left some out: list them instead.
    embedded_assets = PAGE_SIZE

    def __init__(
        self,
        owner: str,
        repo: str,
        tag: str = DEFAULT_TAG,
        *,
        token: str | None,
        api_url: str = DEFAULT_API_URL,
        retry: RetryPolicy = FORGE_RETRY,
    ) -> None:
        self.owner, self.repo, self.tag = owner, repo, tag
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = _GitHubClient(
            api_url,
            headers,
            service="GitHub",
            token_hint=(
                f"{'check' if token else 'set'} {TOKEN_ENV}: the job needs `permissions:"
                " contents: write` to create the release and upload assets; a pull request"
                " from a fork only gets a read-only token (its models are then not uploaded)"
            ),
            retry=retry,
            secret=token,
        )
        self.repo_url = f"{self.client.api_url}/repos/{owner}/{repo}"
        self._release: dict[str, Any] | None = None
        self._release_etag: str | None = None
        self._listing: dict[str, Asset] | None = None
        #: Whether ``_listing`` is as fresh as the last manifest read (no own write since).
        self._listing_current = False

    def __repr__(self) -> str:
        return f"GitHubReleasesBackend({self.owner}/{self.repo}@{self.tag})"

    def close(self) -> None:
        """Close pooled connections."""
        self.client.close()

    # ---------------------------------------------------------------- the release

    def _find_release(self) -> dict[str, Any] | None:
        if self._release is None:
            response = self.client.request(
                "GET", f"{self.repo_url}/releases/tags/{quote(self.tag, safe='')}",
                allow=(404,), what=f"the release {self.tag!r} of {self.owner}/{self.repo}",
            )
            if response.status_code == 404:
                self._check_repository()
                return None
            self._remember(response.json())
        return self._release

    def _check_repository(self) -> None:
        """A missing release is an empty store; a missing repository is a mistake."""
        response = self.client.request("GET", self.repo_url, allow=(404,),
                                       what=f"the repository {self.owner}/{self.repo}")
        if response.status_code == 404:
            raise StoreError(
                f"GitHub has no repository {self.owner}/{self.repo} that this token can see",
                location=self.repo_url,
                hint=f"check the store URL github://OWNER/REPO[/TAG] and {TOKEN_ENV}; a token"
                " without access to a private repository also gets 404",
            )

    def _remember(self, data: Any) -> None:
        release = _release_json(data, self.repo_url)
        self.client.upload_origin = _origin(str(release["upload_url"]))  # named by the API
        self._release = release

    def _ensure_release(self) -> dict[str, Any]:
        release = self._find_release()
        if release is not None:
            return release
        response = self.client.request(
            "POST", f"{self.repo_url}/releases", allow=(422,),
            what=f"creating the model release {self.tag!r} in {self.owner}/{self.repo}",
            json={
                "tag_name": self.tag,
                "name": "deltatrain models",
                "body": RELEASE_BODY,
                "prerelease": True,
                "draft": False,
                "make_latest": "false",
            },
        )
        if response.status_code == 422:  # another run created it a moment ago
            self._release = None
            found = self._find_release()
            if found is None:
                self.client.raise_for(response, "POST", f"{self.repo_url}/releases",
                                      f"creating the release {self.tag!r}")
            assert found is not None
            return found
        self._remember(response.json())
        assert self._release is not None
        return self._release

    def _cached_asset(self, key: str) -> Asset | None:
        """A model file's asset from the last listing (model files are written once per name;
        a replaced one answers 404 and is looked up afresh)."""
        name = flatten(key)
        if self._listing is None or name not in self._listing:
            self._assets()
        assert self._listing is not None
        asset = self._listing.get(name)
        return asset if asset is not None and asset.state == "uploaded" else None

    def _assets(self) -> dict[str, Asset]:
        """A fresh listing of the release's assets, from one conditional GET of the release
        (which embeds them; a release with a full page of assets is listed page by page)."""
        headers = {"If-None-Match": self._release_etag} if self._release_etag else None
        response = self.client.request(
            "GET", f"{self.repo_url}/releases/tags/{quote(self.tag, safe='')}",
            allow=(304, 404), what=f"the release {self.tag!r} of {self.owner}/{self.repo}",
            headers=headers,
        )
        if response.status_code == 404:
            self._release = self._release_etag = None
            self._check_repository()
            self._listing, self._listing_current = {}, True
            return {}
        if response.status_code != 304 or self._release is None:
            self._remember(response.json())
            self._release_etag = response.headers.get("ETag")
        release = self._release
        assert release is not None
        embedded = release.get("assets")
        items = (embedded if isinstance(embedded, list) and len(embedded) < self.embedded_assets else
                 list(self.client.pages(f"{self.repo_url}/releases/{release['id']}/assets",
                                        what="the release's asset list")))
        assets: dict[str, Asset] = {}
        for item in items:
            try:
                asset = Asset(int(item["id"]), str(item["name"]), int(item["size"]),
                              str(item.get("state", "uploaded")), str(item.get("updated_at", "")),
                              str(item["url"]))
            except (KeyError, TypeError, ValueError):
                continue
            assets[asset.name] = asset
        self._listing, self._listing_current = assets, True
        return assets

    def _mirrored(self, generation: int, asset: Asset) -> bytes | None:
        """The manifest copied into the release body, if it is this very generation's asset."""
        body = (self._release or {}).get("body")
        match = _MIRROR_RE.search(body) if isinstance(body, str) else None
        if match is None or (int(match.group(1)), int(match.group(2))) != (generation, asset.id):
            return None
        return match.group(3).encode("utf-8")

    def _mirror(self, generation: int, asset_id: int, data: bytes) -> None:
        """Copy the manifest this run just won into the release body (best effort: a reader
        that finds no current copy downloads the generation's asset)."""
        release = self._release
        if release is None:
            return
        try:
            compact = json.dumps(json.loads(data), separators=(",", ":"), sort_keys=True,
                                 ensure_ascii=False).replace(">", "\\u003e")  # never ends the comment
        except ValueError:
            return
        body = f"{RELEASE_BODY}\n\n<!-- deltatrain-manifest generation={generation} asset={asset_id}\n{compact}\n-->"
        if len(body) > MAX_BODY_CHARS:
            body = RELEASE_BODY  # too long: readers download the asset; no stale copy stays
        try:
            self.client.request("PATCH", f"{self.repo_url}/releases/{release['id']}",
                                what="updating the model release's description", json={"body": body})
        except StoreError:
            pass  # a cache, never correctness

    def _upload(self, name: str, body: Any, size: int) -> int | None:
        """Upload one asset; its id, or None when the name is taken (422 already_exists)."""
        release = self._ensure_release()
        upload_url = str(release["upload_url"]).split("{", 1)[0]
        self._listing_current = False
        response = self.client.request(
            "POST", upload_url, params={"name": name}, data=body, allow=(422,),
            what=f"uploading {name}",
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        if response.status_code == 422:
            return None
        try:
            return int(response.json()["id"])
        except (ValueError, KeyError, TypeError):
            return 0  # uploaded, id unknown: the body copy is then never trusted

    def _delete_asset(self, asset: Asset) -> None:
        self._listing_current = False
        self.client.request("DELETE", f"{self.repo_url}/releases/assets/{asset.id}",
                            allow=(404,), what=f"deleting {asset.name}")

    def _read_asset(self, asset: Asset, max_bytes: int | None) -> bytes:
        if max_bytes is not None and asset.size > max_bytes:
            raise too_large(asset.name, self.describe_name(asset.name), max_bytes)
        response = self.client.request(
            "GET", f"{self.repo_url}/releases/assets/{asset.id}", what=f"reading {asset.name}",
            headers={"Accept": "application/octet-stream"},
        )
        if max_bytes is not None and len(response.content) > max_bytes:
            raise too_large(asset.name, self.describe_name(asset.name), max_bytes)
        return response.content

    # ---------------------------------------------------------------- Backend

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Download a whole asset (the newest manifest generation for the manifest)."""
        found = self.get_versioned(key, max_bytes=max_bytes)
        if found is None:
            raise StoreNotFoundError(
                f"not found in the model store: {self.describe(key)}", location=self.describe(key)
            )
        return found.data

    def get_versioned(self, key: str, *, max_bytes: int | None = None) -> Versioned | None:
        """Read a key; the manifest's version is its generation number."""
        if key == MANIFEST_KEY:
            found = self._read_manifest(None, max_bytes)
            if found is None:
                return None
            assert found.data is not None and found.token is not None  # no token given
            return Versioned(found.data, found.token.split(":", 1)[0])
        for attempt in range(3):  # a file can be deleted or replaced between listing and read
            if attempt:
                self._listing = None
            asset = self._cached_asset(key)
            if asset is None:
                return None
            try:
                return Versioned(self._read_asset(asset, max_bytes), str(asset.id))
            except StoreNotFoundError:
                continue
        return None

    def get_if_changed(
        self, key: str, token: str | None, *, max_bytes: int | None = None
    ) -> Conditional | None:
        """The manifest by one conditional GET of the release (see the module docstring);
        the token is ``<generation>:<asset id>``. Other keys are read in full."""
        if key == MANIFEST_KEY:
            return self._read_manifest(token, max_bytes)
        found = self.get_versioned(key, max_bytes=max_bytes)
        return None if found is None else Conditional(None, found.data)

    def _read_manifest(self, token: str | None, max_bytes: int | None) -> Conditional | None:
        for _ in range(3):  # a generation can be deleted between listing and download
            newest = _newest_generation(self._assets())
            if newest is None:
                return None
            generation, asset = newest
            current = f"{generation}:{asset.id}"
            if current == token:
                return Conditional(current, None)
            if max_bytes is not None and asset.size > max_bytes:  # the limit is the file's
                raise too_large(asset.name, self.describe_name(asset.name), max_bytes)
            data = self._mirrored(generation, asset)
            if data is not None:
                return Conditional(current, data)
            try:
                return Conditional(current, self._read_asset(asset, max_bytes))
            except StoreNotFoundError:
                continue
        return None

    def put_if_version(self, key: str, data: bytes, expected: str | None) -> bool:
        """Upload generation ``expected + 1`` of the manifest; False when it exists already."""
        if key != MANIFEST_KEY:
            raise StoreError(f"compare-and-swap is only used for {MANIFEST_KEY}, not {key}")
        generation = int(expected) + 1 if expected and expected.isdigit() else 1
        if expected is not None and not expected.isdigit():
            return False
        asset_id = self._upload(f"manifest.{generation}.json", data, len(data))
        if asset_id is None:
            # a failed upload can leave an empty "starter" asset holding the name (GitHub
            # documents that it can be deleted): remove it so the chain can go on
            taken = self._assets().get(f"manifest.{generation}.json")
            if taken is not None and taken.state != "uploaded":
                self._delete_asset(taken)
            return False
        self._drop_old_generations(generation)
        if asset_id:
            self._mirror(generation, asset_id, data)
        return True

    def _drop_old_generations(self, newest: int) -> None:
        try:
            for asset in self._assets().values():
                match = MANIFEST_FILE_RE.fullmatch(asset.name)
                if match and int(match.group(1)) <= newest - KEEP_GENERATIONS:
                    self._delete_asset(asset)
        except StoreError:
            pass  # old generations cost a little space, never correctness

    def _replace(self, key: str, body: Callable[[], Any], size: int) -> None:
        """Delete the asset and upload the new body (again when another writer's copy reappears)."""
        name = flatten(key)
        for _ in range(3):
            existing = self._assets().get(name)
            if existing is not None:
                self._delete_asset(existing)
            data = body()
            try:
                if self._upload(name, data, size) is not None:
                    return
            finally:
                if hasattr(data, "close"):
                    data.close()
        raise StoreError(
            f"{name} kept reappearing while this run replaced it",
            location=self.describe(key),
            hint="another pipeline is writing the same model; run the job again",
        )

    def get_to_file(self, key: str, path: Path) -> None:
        """Stream an asset into ``path``."""
        asset = self._assets().get(flatten(key))  # fresh: the archive is the big read
        if asset is None or asset.state != "uploaded":
            raise StoreNotFoundError(
                f"not found in the model store: {self.describe(key)}", location=self.describe(key)
            )
        self.client.download(f"{self.repo_url}/releases/assets/{asset.id}", path,
                             what=asset.name, headers={"Accept": "application/octet-stream"})

    def exists(self, key: str) -> bool:
        """Whether the asset exists (the manifest: whether any generation does)."""
        if key == MANIFEST_KEY:
            return _newest_generation(self._assets()) is not None
        asset = self._assets().get(flatten(key))
        return asset is not None and asset.state == "uploaded"

    def size(self, key: str) -> int | None:
        """The asset's size from the listing of the last manifest read (one response: what the
        manifest lists is checked against the same moment), or a fresh one after own writes."""
        listing = self._listing if self._listing is not None and self._listing_current else self._assets()
        asset = listing.get(flatten(key))
        if asset is None or asset.state != "uploaded":
            raise StoreNotFoundError(
                f"not found in the model store: {self.describe(key)}", location=self.describe(key)
            )
        return asset.size

    def delete(self, key: str) -> None:
        """Delete the asset (every manifest generation for the manifest)."""
        for asset in self._assets().values():
            if asset.name == flatten(key) or (
                key == MANIFEST_KEY and MANIFEST_FILE_RE.fullmatch(asset.name)
            ):
                self._delete_asset(asset)

    def describe(self, key: str) -> str:
        """``github://owner/repo/tag[/asset-name]`` (no token)."""
        root = f"github://{self.owner}/{self.repo}/{self.tag}"
        return f"{root}/{check_key(key)}" if key else root

    def describe_name(self, name: str) -> str:
        """Location of an asset by its name."""
        return f"github://{self.owner}/{self.repo}/{self.tag}/{name}"

    def list_keys(self, prefix: str) -> list[ListedKey]:
        """Model files (``models/...``) among the assets, with their update times."""
        listed = []
        for asset in self._assets().values():
            key = model_key_of(asset.name)
            if key is not None and key.startswith(prefix):
                listed.append(ListedKey(key, parse_time(asset.updated_at)))
        return listed


class _GitHubClient(ForgeClient):
    """The uploads host named in the release's upload_url is the only other origin allowed."""

    upload_origin: str | None = None

    def extra_origins(self) -> tuple[str, ...]:
        return (self.upload_origin,) if self.upload_origin else ()


def _release_json(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict) or "id" not in data or "upload_url" not in data:
        raise StoreError("GitHub answered without a release id and upload_url", location=where,
                         hint=f"check {API_URL_ENV}")
    return data


def _newest_generation(assets: Mapping[str, Asset]) -> tuple[int, Asset] | None:
    generations = [
        (int(match.group(1)), asset)
        for asset in assets.values()
        if asset.state == "uploaded" and (match := MANIFEST_FILE_RE.fullmatch(asset.name))
    ]
    return max(generations, key=lambda g: g[0]) if generations else None


def parse_url(url: str) -> tuple[str, str, str]:
    """``github://OWNER/REPO[/TAG]`` -> (owner, repo, tag)."""
    match = _URL_RE.fullmatch(url.strip())
    if not match:
        raise StoreError(
            f"not a GitHub Releases store URL: {url!r}",
            hint="use github://OWNER/REPO or github://OWNER/REPO/TAG (the release's tag,"
            f" default {DEFAULT_TAG})",
        )
    return match.group(1), match.group(2), match.group(3) or DEFAULT_TAG


def open_backend(
    url: str, options: BackendOptions, environ: Mapping[str, str] | None = None
) -> GitHubReleasesBackend:
    """GitHub Releases backend; API base from GITHUB_API_URL, token from the options or GITHUB_TOKEN."""
    env = os.environ if environ is None else environ
    owner, repo, tag = parse_url(url)
    backend = GitHubReleasesBackend(
        owner, repo, tag,
        token=options.token or env.get(TOKEN_ENV) or None,
        api_url=env.get(API_URL_ENV) or DEFAULT_API_URL,
        retry=forge_retry(env),
    )
    return backend
