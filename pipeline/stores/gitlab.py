"""Model store in GitLab's generic package registry: ``gitlab://HOST/PROJECT/PACKAGE``.

``PROJECT`` is the numeric id or the full path (``group/sub/project``); ``PACKAGE``
is the last path part. Store keys are flattened onto
``/projects/:id/packages/generic/<package>/<version>/<file>``: a model
``models/<name>/<file>`` becomes version ``<name>`` with file ``<file>``; the
manifest lives in version ``deltatrain-store``. Inside GitLab CI the job's
``CI_JOB_TOKEN`` is sent as ``JOB-TOKEN``; outside it (or when
``DELTATRAIN_STORE_TOKEN`` / ``GITLAB_TOKEN`` is set) a personal, project or group
access token is sent as ``PRIVATE-TOKEN``. The API base is ``https://HOST/api/v4``,
or ``CI_API_V4_URL`` when that points at the same host (as GitLab runners set it).

Compare-and-swap on the manifest
--------------------------------
Generic packages have no conditional upload, and a project may allow duplicate
file names (a download then returns the newest duplicate). Each writer therefore
uploads an immutable, uniquely named generation ``manifest.<n>.<writer-uuid>.json``
with ``select=package_file`` (the answer carries the new package file's id), then
lists the package's files: among the files of generation ``n`` the one with the
lowest id (the first upload GitLab recorded) wins. A writer that did not win deletes
its file and reports the conflict (re-read, merge, retry). Readers take the highest
generation and, within it, the lowest id. Names never repeat, so the project's
duplicate policy does not matter for the manifest; ordinary files are replaced by
uploading the new file and deleting older ones of the same name (or, when the
project refuses duplicates, deleting first).

Reading the manifest
--------------------
Generic packages have no conditional reads, and the newest generation can only be
found by listing. So the writer that won a generation also uploads a copy of it under
the fixed name ``manifest.json`` (one header line: generation, winning file id and the
package ids of the versions; then the manifest), and a download of a name returns its
newest upload. A reader (a skip decision, ``serve``'s poller) makes that one GET; the
archive check lists the model's version by the package id the header names: a skip is
two requests, fresh or warm. Writers (compare-and-swap, rollback) always list.

The copy names an older generation only while a slow writer's late copy awaits its
own clean-up: every writer deletes the copies it listed
before it uploads a generation (a failed delete fails the write, leaving the manifest
as it was), so a writer that wins and dies before its own copy is up leaves none; after
winning it deletes the copies uploaded before its generation's file, uploads its own,
and deletes that again if a newer generation won meanwhile. A reader never goes back to
an older generation than it read last. Without a copy (older stores, a failed write,
publishing in progress) readers list: the copy (404), one package lookup, one listing
of the store version, one download.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from pipeline.errors import StoreError, StoreIntegrityError, StoreNotFoundError
from pipeline.stores.backend import BackendOptions, Conditional, ListedKey, Versioned, too_large
from pipeline.stores.forge import (
    FORGE_RETRY,
    MANIFEST_FILE_RE,
    ForgeClient,
    flatten,
    forge_retry,
    ReplacingWrites,
    parse_time,
)
from pipeline.stores.http import RetryPolicy
from pipeline.stores.layout import MANIFEST_KEY, MODELS_DIR, check_key

API_URL_ENV = "CI_API_V4_URL"
JOB_TOKEN_ENV = "CI_JOB_TOKEN"
TOKEN_ENV = "GITLAB_TOKEN"
STORE_VERSION = "deltatrain-store"
#: The readers' copy of the newest manifest generation, at a fixed name: one GET to read.
COPY_FILE = "manifest.json"
KEEP_GENERATIONS = 3


@dataclass(frozen=True)
class PackageFile:
    """One file of one package version, as the API lists it."""

    id: int
    file_name: str
    size: int
    created_at: str
    package_id: int


class GitLabPackagesBackend(ReplacingWrites):
    """Store keys as generic package files; the manifest is a chain of immutable generations."""

    def __init__(
        self,
        host: str,
        project: str,
        package: str,
        *,
        headers: Mapping[str, str],
        api_url: str,
        token_hint: str,
        secret: str | None = None,
        retry: RetryPolicy = FORGE_RETRY,
    ) -> None:
        self.host, self.project, self.package = host, project, package
        self.client = ForgeClient(api_url, headers, service="GitLab", token_hint=token_hint,
                                  retry=retry, secret=secret)
        self.project_url = f"{self.client.api_url}/projects/{quote(project, safe='')}"
        self.generic_url = f"{self.project_url}/packages/generic/{quote(package, safe='')}"
        # version -> package ids: concurrent first uploads can create one version twice
        self._package_ids: dict[str, list[int]] = {}
        self._writer = uuid.uuid4().hex
        self._listed: list[PackageFile] = []  # the store version's files at the last manifest read
        self._won: tuple[int, int] = (0, -1)  # the last generation this writer won, and its file id

    def __repr__(self) -> str:
        return f"GitLabPackagesBackend({self.host}/{self.project}/{self.package})"

    def close(self) -> None:
        """Close pooled connections."""
        self.client.close()

    # ---------------------------------------------------------------- packages and files

    def _split(self, key: str) -> tuple[str, str]:
        """Key -> (package version, file name)."""
        parts = check_key(key).split("/")
        if len(parts) == 3 and parts[0] == MODELS_DIR:
            return parts[1], parts[2]
        return STORE_VERSION, flatten(key)

    def _file_url(self, version: str, file_name: str) -> str:
        return f"{self.generic_url}/{quote(version, safe='')}/{quote(file_name, safe='')}"

    def _refresh_packages(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        try:
            for item in self.client.pages(
                f"{self.project_url}/packages", what=f"the packages of project {self.project}",
                params={"package_type": "generic", "package_name": self.package},
            ):
                if item.get("name") == self.package and isinstance(item.get("id"), int):
                    found.setdefault(str(item.get("version")), []).append(item["id"])
        except StoreNotFoundError as exc:  # the project, not a key: never "an empty store"
            raise StoreError(exc.message, location=exc.location,
                             hint=f"check the project in the store URL ({self.project!r}: its"
                             " numeric id or full path); a token that cannot see a private"
                             " project also gets 404") from exc
        self._package_ids = found
        return found

    def _package_ids_of(self, version: str, *, fresh: bool = False) -> list[int]:
        if fresh or version not in self._package_ids:
            self._refresh_packages()
        return self._package_ids.get(version, [])

    def _files(self, version: str) -> list[PackageFile]:
        """Files of one version (over every package record it has), oldest first."""
        for attempt in range(2):
            files: list[PackageFile] = []
            try:
                for package_id in self._package_ids_of(version, fresh=attempt > 0):
                    for item in self.client.pages(
                        f"{self.project_url}/packages/{package_id}/package_files",
                        what=f"the files of {self.package} {version}",
                    ):
                        try:
                            files.append(PackageFile(int(item["id"]), str(item["file_name"]),
                                                     int(item.get("size") or 0),
                                                     str(item.get("created_at", "")), package_id))
                        except (KeyError, TypeError, ValueError):
                            continue
            except StoreNotFoundError:  # a package was deleted meanwhile: look it up again
                continue
            return sorted(files, key=lambda f: f.id)
        return []

    def _delete_file(self, version: str, file: PackageFile) -> None:
        self.client.request(
            "DELETE", f"{self.project_url}/packages/{file.package_id}/package_files/{file.id}",
            allow=(404,), what=f"deleting {file.file_name}",
        )

    def _upload(self, version: str, file_name: str, body: Any, size: int) -> tuple[int, int]:
        """PUT one file with select=package_file; (status, new package file id or -1)."""
        response = self.client.request(
            "PUT", self._file_url(version, file_name), params={"select": "package_file"},
            data=body, allow=(403,), what=f"uploading {file_name} to {self.package} {version}",
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        if response.status_code == 403:
            if "duplicate" in self.client.message(response).lower():
                return 403, -1
            self.client.raise_for(response, "PUT", self._file_url(version, file_name),
                                  f"uploading {file_name}")
        try:
            data = response.json()
            file_id, package_id = int(data["id"]), int(data["package_id"])
        except (ValueError, KeyError, TypeError):
            return response.status_code, -1
        known = self._package_ids.setdefault(version, [])
        if package_id not in known:
            known.append(package_id)
        return response.status_code, file_id

    def _manifest_winner(self) -> tuple[int, PackageFile] | None:
        generations: dict[int, PackageFile] = {}
        self._listed = self._files(STORE_VERSION)
        for file in self._listed:  # oldest first: the first of each generation wins
            match = MANIFEST_FILE_RE.fullmatch(file.file_name)
            if match:
                generations.setdefault(int(match.group(1)), file)
        if not generations:
            return None
        newest = max(generations)
        return newest, generations[newest]

    def _read(self, version: str, file_name: str, max_bytes: int | None) -> bytes:
        url = self._file_url(version, file_name)
        with self.client.request("GET", url, what=f"{file_name} of {self.package} {version}",
                                 stream=True) as response:
            length = response.headers.get("Content-Length", "")
            if max_bytes is not None and length.isdigit() and int(length) > max_bytes:
                raise too_large(file_name, url, max_bytes)
            chunks, received = [], 0
            for chunk in response.iter_content(1024 * 1024):
                received += len(chunk)
                if max_bytes is not None and received > max_bytes:
                    raise too_large(file_name, url, max_bytes)
                chunks.append(chunk)
            return b"".join(chunks)

    # ---------------------------------------------------------------- Backend

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Download a file (the winning newest manifest generation for the manifest)."""
        found = self.get_versioned(key, max_bytes=max_bytes)
        if found is None:
            raise StoreNotFoundError(
                f"not found in the model store: {self.describe(key)}", location=self.describe(key)
            )
        return found.data

    def get_versioned(self, key: str, *, max_bytes: int | None = None) -> Versioned | None:
        """Read a key; the manifest's version is its generation number."""
        if key != MANIFEST_KEY:
            version, file_name = self._split(key)
            try:
                data = self._read(version, file_name, max_bytes)
            except StoreNotFoundError:
                return None
            return Versioned(data, "")
        for _ in range(3):  # a generation can be deleted between listing and download
            winner = self._manifest_winner()
            if winner is None:
                return None
            try:
                return Versioned(self._read(STORE_VERSION, winner[1].file_name, max_bytes),
                                 str(winner[0]))
            except StoreNotFoundError:
                continue
        return None

    def get_if_changed(
        self, key: str, token: str | None, *, max_bytes: int | None = None
    ) -> Conditional | None:
        """The manifest: list the store version's files, download only when the winning newest
        generation (token ``<generation>:<file id>``) is not the one read last time."""
        if key != MANIFEST_KEY:
            found = self.get_versioned(key, max_bytes=max_bytes)
            return None if found is None else Conditional(None, found.data)
        copy = self._read_copy(max_bytes)
        if copy is not None and _generation(copy[0]) >= _generation(token):  # never backwards
            return Conditional(copy[0], None if copy[0] == token else copy[1])
        for _ in range(3):  # a generation can be deleted between listing and download
            winner = self._manifest_winner()
            if winner is None:
                return None
            current = f"{winner[0]}:{winner[1].id}"
            if current == token:
                return Conditional(current, None)
            if max_bytes is not None and winner[1].size > max_bytes:
                raise too_large(winner[1].file_name, self.describe(key), max_bytes)
            try:
                return Conditional(current, self._read(STORE_VERSION, winner[1].file_name, max_bytes))
            except StoreNotFoundError:
                continue
        return None

    # ---------------------------------------------------------------- the readers' copy

    def _read_copy(self, max_bytes: int | None) -> tuple[str, bytes] | None:
        """The winner's copy of the newest manifest generation at the fixed name (one GET: GitLab
        serves the newest upload of a file name), as (token, manifest); None when there is none
        or it cannot be read, and the generations must be listed."""
        try:
            raw = self._read(STORE_VERSION, COPY_FILE, None if max_bytes is None else max_bytes + 65536)
        except (StoreNotFoundError, StoreIntegrityError):  # none, or too large: list instead
            return None
        header_line, _, data = raw.partition(b"\n")
        try:
            header = json.loads(header_line)
            token = f"{int(header['generation'])}:{int(header['file_id'])}"
            packages = header.get("packages") or {}
            for version, ids in packages.items():
                if isinstance(ids, list) and all(isinstance(i, int) for i in ids):
                    self._package_ids.setdefault(str(version), list(ids))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if max_bytes is not None and len(data) > max_bytes:
            return None
        return token, data

    def _withdraw_copies(self, listed: list[PackageFile], *, strict: bool) -> None:
        """Delete the readers' copies in ``listed`` (each names an older generation than the one
        this writer may win). ``strict``: a failed delete raises, before the generation is
        uploaded, so the manifest stays as it was rather than a stale copy outliving it."""
        for file in listed:
            if file.file_name == COPY_FILE:
                if strict:
                    self._delete_file(STORE_VERSION, file)
                else:
                    self._quietly(lambda f=file: self._delete_file(STORE_VERSION, f))

    def _write_copy(self, generation: int, data: bytes) -> None:
        """After winning ``generation``: upload the readers' copy, then delete the older copies,
        or this one if a newer generation won meanwhile. Best effort: without a copy, readers list."""
        header = {"generation": generation, "file_id": self._won[1],
                  "packages": {v: ids for v, ids in self._package_ids.items()}}
        payload = json.dumps(header, separators=(",", ":")).encode() + b"\n" + data
        try:
            status, mine = self._upload(STORE_VERSION, COPY_FILE, payload, len(payload))
            if status == 403 or mine < 0:  # duplicates refused: an older writer's late copy is
                return  # there, and its writer deletes it on seeing this generation
            files = self._files(STORE_VERSION)
        except StoreError:
            return
        newer = any((m := MANIFEST_FILE_RE.fullmatch(f.file_name)) and int(m.group(1)) > generation
                    for f in files)
        for file in files:  # a stale copy of mine goes; else the older copies (the newest is served)
            if file.file_name == COPY_FILE and (file.id == mine if newer else file.id < mine):
                self._quietly(lambda f=file: self._delete_file(STORE_VERSION, f))

    def put_if_version(self, key: str, data: bytes, expected: str | None) -> bool:
        """Upload generation ``expected + 1``; False when another writer's file of it came first."""
        if key != MANIFEST_KEY:
            raise StoreError(f"compare-and-swap is only used for {MANIFEST_KEY}, not {key}")
        if expected is not None and not expected.isdigit():
            return False
        generation = int(expected) + 1 if expected else 1
        # the copies the read of ``expected`` listed go first: a writer that wins and then dies
        # before its own copy is up leaves none, never one naming an older generation
        self._withdraw_copies(self._listed, strict=True)
        name = f"manifest.{generation}.{uuid.uuid4().hex}.json"
        _, mine = self._upload(STORE_VERSION, name, data, len(data))
        self._refresh_packages()  # every package record of the version, even one made just now
        files = self._files(STORE_VERSION)
        same = [f for f in files if (m := MANIFEST_FILE_RE.fullmatch(f.file_name))
                and int(m.group(1)) == generation]
        if not same or same[0].file_name != name:
            for file in files:
                if file.file_name == name or file.id == mine:
                    self._quietly(lambda f=file: self._delete_file(STORE_VERSION, f))
            return False
        for file in files:  # old generations, keeping a few for readers in flight
            match = MANIFEST_FILE_RE.fullmatch(file.file_name)
            if match and int(match.group(1)) <= generation - KEEP_GENERATIONS:
                self._quietly(lambda f=file: self._delete_file(STORE_VERSION, f))
        self._won = (generation, same[0].id)
        # copies uploaded before this generation's file name older generations; later ones are
        # a slow older writer's (it deletes its own) or a newer generation's (kept)
        self._withdraw_copies([f for f in files if f.id < same[0].id], strict=False)
        if not any((m := MANIFEST_FILE_RE.fullmatch(f.file_name)) and int(m.group(1)) > generation
                   for f in files):
            self._write_copy(generation, data)
        return True

    def _replace(self, key: str, body: Callable[[], Any], size: int) -> None:
        """Upload the body; where the project refuses duplicates, delete the old file first."""
        version, file_name = self._split(key)
        for _attempt in range(2):
            data = body()
            try:
                status, mine = self._upload(version, file_name, data, size)
            finally:
                if hasattr(data, "close"):
                    data.close()
            if status != 403:
                break
            # the project refuses duplicate files: delete the old one first, then upload
            for file in self._files(version):
                if file.file_name == file_name:
                    self._delete_file(version, file)
        else:
            raise StoreError(f"GitLab kept refusing {file_name} as a duplicate",
                             location=self.describe(key))
        for file in self._files(version):  # older duplicates: the download serves the newest
            if file.file_name == file_name and mine > 0 and file.id < mine:
                self._quietly(lambda f=file: self._delete_file(version, f))

    def get_to_file(self, key: str, path: Path) -> None:
        """Stream a file into ``path``."""
        version, file_name = self._split(key)
        self.client.download(self._file_url(version, file_name), path,
                             what=f"{file_name} of {self.package} {version}")

    def exists(self, key: str) -> bool:
        """Whether the key has a file."""
        if key == MANIFEST_KEY:
            return self._manifest_winner() is not None
        version, file_name = self._split(key)
        return any(f.file_name == file_name for f in self._files(version))

    def size(self, key: str) -> int | None:
        """The newest file's size from the package file listing."""
        version, file_name = self._split(key)
        sizes = [f.size for f in self._files(version) if f.file_name == file_name]
        if not sizes:
            raise StoreNotFoundError(
                f"not found in the model store: {self.describe(key)}", location=self.describe(key)
            )
        return sizes[-1]

    def delete(self, key: str) -> None:
        """Delete every file of the key (the whole version when it becomes empty)."""
        version, file_name = self._split(key)
        files = self._files(version)
        doomed = [f for f in files if f.file_name == file_name
                  or (key == MANIFEST_KEY and MANIFEST_FILE_RE.fullmatch(f.file_name))]
        for file in doomed:
            self._delete_file(version, file)
        if doomed and len(doomed) == len(files) and version != STORE_VERSION:
            for package_id in self._package_ids.pop(version, []):
                self.client.request("DELETE", f"{self.project_url}/packages/{package_id}",
                                    allow=(404,), what=f"deleting {self.package} {version}")

    def describe(self, key: str) -> str:
        """``gitlab://host/project/package[/key]`` (no token; errors name the API URL)."""
        root = f"gitlab://{self.host}/{self.project}/{self.package}"
        return f"{root}/{check_key(key)}" if key else root

    def list_keys(self, prefix: str) -> list[ListedKey]:
        """Model files (one version per model), with their upload times."""
        listed = []
        for version in sorted(self._refresh_packages()):
            if version == STORE_VERSION:
                continue
            for file in self._files(version):
                key = f"{MODELS_DIR}/{version}/{file.file_name}"
                if key.startswith(prefix):
                    listed.append(ListedKey(key, parse_time(file.created_at)))
        return listed

    def _quietly(self, action: Any) -> None:
        try:
            action()
        except StoreError:
            pass  # clean-up is best effort


def _generation(token: str | None) -> int:
    """The generation of a manifest token ``<generation>:<file id>`` (-1: none)."""
    head = (token or "").split(":", 1)[0]
    return int(head) if head.isdigit() else -1


def parse_url(url: str) -> tuple[str, str, str]:
    """``gitlab://HOST/PROJECT_ID_OR_PATH/PACKAGE`` -> (host, project, package)."""
    rest = url.strip()[len("gitlab://"):].strip("/")
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts) or "@" in parts[0] or "?" in rest or "#" in rest:
        raise StoreError(
            f"not a GitLab package store URL: {url!r}",
            hint="use gitlab://HOST/PROJECT_ID_OR_PATH/PACKAGE, e.g."
            " gitlab://gitlab.com/acme/assistant/deltatrain-models (tokens go in CI_JOB_TOKEN,"
            " DELTATRAIN_STORE_TOKEN or GITLAB_TOKEN, never in the URL)",
        )
    return parts[0], "/".join(parts[1:-1]), parts[-1]


def open_backend(
    url: str, options: BackendOptions, environ: Mapping[str, str] | None = None
) -> GitLabPackagesBackend:
    """GitLab backend: JOB-TOKEN inside GitLab CI, PRIVATE-TOKEN (store token / GITLAB_TOKEN) outside."""
    env = os.environ if environ is None else environ
    host, project, package = parse_url(url)
    private = options.token or env.get(TOKEN_ENV) or None
    job = env.get(JOB_TOKEN_ENV) if env.get("GITLAB_CI") == "true" else None
    headers: dict[str, str] = {}
    if private:
        headers["PRIVATE-TOKEN"] = private
    elif job:
        headers["JOB-TOKEN"] = job
    api = env.get(API_URL_ENV, "")
    api_url = api if api and _same_host(api, host) else f"https://{host}/api/v4"
    hint = (
        "the job token needs the project's package registry (enable it under Settings >"
        " General > Visibility; a job token of another project must be allowed in its"
        " CI/CD > Job token permissions)" if job and not private else
        f"set DELTATRAIN_STORE_TOKEN or {TOKEN_ENV} to an access token with the api scope"
        " (Developer role or more to upload)"
    )
    return GitLabPackagesBackend(host, project, package, headers=headers, api_url=api_url,
                                 token_hint=hint, secret=private or job, retry=forge_retry(env))


def _same_host(api_url: str, host: str) -> bool:
    """Whether CI_API_V4_URL serves ``host`` (CI_SERVER_HOST carries no port, the API URL may)."""
    from urllib.parse import urlsplit

    netloc = urlsplit(api_url).netloc.lower()
    return netloc == host.lower() or (":" not in host and netloc.split(":")[0] == host.lower())
