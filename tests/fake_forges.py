"""Local fakes of the two forge APIs the model stores use, on 127.0.0.1.

Written from the public documentation:

* GitHub REST "Releases" and "Release assets" (API version 2022-11-28): get a release by
  tag (404 when missing), create a release (201; 422 ``already_exists`` for a taken tag),
  list assets (``per_page``/``page``, ``Link: rel="next"``), upload an asset to the
  release's ``upload_url`` (201; 422 ``already_exists`` for a taken name), get an asset
  with ``Accept: application/octet-stream`` (302 to the file), delete an asset (204).
  A release is shown with its ``assets`` embedded and an ``ETag``; ``If-None-Match`` with
  that ETag answers 304 (conditional requests); ``PATCH`` updates its body (422 beyond
  125,000 characters).
  ``Authorization: Bearer`` is required (401 "Bad credentials"); a read-only token gets
  403 "Resource not accessible by integration" on writes.
* GitLab "Generic packages repository" and "Packages API": PUT a file (201; with
  ``select=package_file`` the package file as JSON; 403 when the project refuses
  duplicates), GET a file (the newest duplicate; 404), list a project's packages and a
  package's files (``per_page``/``page``, ``Link`` and ``X-Next-Page``), delete a
  package file or a package (204). ``PRIVATE-TOKEN`` or ``JOB-TOKEN`` is required (401).

Both keep a request log and take injected faults: a status (with headers, e.g. a rate
limit), a dropped connection midway through the body, or a stall.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

GITHUB_TOKEN = "ghs_fake-releases-token"
GITLAB_TOKEN = "glpat-fake-packages-token"
JOB_TOKEN = "glcbt-fake-job-token"


@dataclass
class ForgeFault:
    """Answer ``times`` matching requests (after ``skip``) with ``status``+``headers``, or drop."""

    method: str
    pattern: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # the JSON answer (default: {"message": "injected fault"})
    drop: bool = False
    stall: float = 0.0
    times: int | None = 1
    skip: int = 0
    hits: int = 0

    def take(self, method: str, path: str) -> bool:
        if self.method not in (method, "*") or not re.search(self.pattern, path):
            return False
        if self.times is not None and self.hits >= self.times + self.skip:
            return False
        self.hits += 1
        return self.hits > self.skip


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # dropped connections are part of the tests


class FakeForge:
    """Server plumbing shared by both fakes: routing, log, faults, pagination."""

    max_per_page = 100

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, str]] = []
        self.not_modified = 0  # conditional GETs answered 304
        self.faults: list[ForgeFault] = []
        self._httpd: _QuietServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeForge:
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def add_fault(self, method: str, pattern: str, **kwargs: Any) -> ForgeFault:
        """Register a fault (first matching wins)."""
        fault = ForgeFault(method, pattern, **kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def requests(self, method: str = "*", pattern: str = "") -> list[str]:
        """Logged paths of ``method`` requests matching ``pattern``."""
        with self.lock:
            return [p for m, p in self.log if method in (m, "*") and re.search(pattern, p)]

    def fault_for(self, method: str, path: str) -> ForgeFault | None:
        with self.lock:
            for fault in self.faults:
                if fault.take(method, path):
                    return fault
        return None

    def page(self, items: list[Any], path: str, query: dict[str, str]
             ) -> tuple[list[Any], dict[str, str]]:
        """Slice ``items`` by ``page``/``per_page``; the Link/X-Next-Page headers to send."""
        per_page = max(1, min(int(query.get("per_page", "30")), self.max_per_page))
        number = max(1, int(query.get("page", "1")))
        chunk = items[(number - 1) * per_page: number * per_page]
        headers: dict[str, str] = {"X-Total": str(len(items))}
        if number * per_page < len(items):
            following = urlencode({**query, "page": str(number + 1), "per_page": str(per_page)})
            headers["Link"] = f'<{self.origin}{path}?{following}>; rel="next"'
            headers["X-Next-Page"] = str(number + 1)
        return chunk, headers

    def route(self, request: Request) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass
class Request:
    """One request as the fakes see it."""

    handler: BaseHTTPRequestHandler
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    raw_path: str = ""

    def header(self, name: str) -> str | None:
        return self.handler.headers.get(name)

    def reply(self, status: int, payload: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.handler.send_response(status)
        self.handler.send_header(
            "Content-Type", "application/octet-stream" if raw is not None else "application/json"
        )
        self.handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.end_headers()
        if self.method != "HEAD":
            self.handler.wfile.write(data)


def _handler(fake: FakeForge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # headers and body in one write (no Nagle/delayed-ACK stalls)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            with fake.lock:
                fake.log.append((self.command, path + "?" + parts.query))
            length = int(self.headers.get("Content-Length") or 0)
            fault = fake.fault_for(self.command, path + "?" + parts.query)
            if fault and fault.drop:
                self.rfile.read(min(length, 1024))
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            body = self.rfile.read(length) if length else b""
            if fault and fault.stall:
                time.sleep(fault.stall)
            request = Request(self, self.command, path,
                              {k: v[-1] for k, v in parse_qs(parts.query).items()}, body,
                              parts.path)
            if fault and fault.status:
                return request.reply(fault.status, fault.body or {"message": "injected fault"},
                                     fault.headers)
            fake.route(request)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    return Handler


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- GitHub


class FakeGitHubReleases(FakeForge):
    """Releases and their assets of one repository, served as GitHub's REST API."""

    def __init__(self, repo: str = "octo/assistant", token: str = GITHUB_TOKEN) -> None:
        super().__init__()
        self.repo = repo
        self.token = token
        self.read_only = False
        self.releases: dict[int, dict[str, Any]] = {}
        self.assets: dict[int, dict[str, Any]] = {}  # id -> asset JSON + "_data"
        self.next_id = 100
        self.max_body_chars = 125_000  # GitHub's limit for a release body
        self.max_embedded_assets = 100

    @property
    def api_url(self) -> str:
        return self.origin + "/api/v3"

    def asset_names(self) -> list[str]:
        with self.lock:
            return sorted(a["name"] for a in self.assets.values())

    def asset_data(self, name: str) -> bytes:
        with self.lock:
            return next(a["_data"] for a in self.assets.values() if a["name"] == name)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _public(self, asset: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in asset.items() if not k.startswith("_")}

    def _release_json(self, release: dict[str, Any]) -> dict[str, Any]:
        """The release as the API shows it: with its assets embedded (caller holds the lock)."""
        assets = [self._public(a) for a in sorted(self.assets.values(), key=lambda a: a["id"])
                  if a["_release"] == release["id"]]
        return {**release, "assets": assets[: self.max_embedded_assets]}

    def route(self, r: Request) -> None:
        limits = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999",
                  "x-ratelimit-reset": str(int(time.time()) + 3600)}
        if r.header("Authorization") != f"Bearer {self.token}":
            return r.reply(401, {"message": "Bad credentials"}, limits)
        api = f"/api/v3/repos/{self.repo}"
        uploads = f"/api/uploads/repos/{self.repo}"
        writes = r.method in ("POST", "PUT", "PATCH", "DELETE")
        if writes and self.read_only:
            return r.reply(403, {"message": "Resource not accessible by integration"}, limits)
        if r.path == api:
            r.path += "/"
        if not (r.path.startswith(api + "/") or r.path.startswith(uploads + "/")):
            if r.path.startswith("/download/") and r.method == "GET":
                with self.lock:
                    asset = self.assets.get(int(r.path.rsplit("/", 1)[-1]))
                if asset is None:
                    return r.reply(404, {"message": "Not Found"})
                return r.reply(200, raw=asset["_data"])
            return r.reply(404, {"message": "Not Found"}, limits)
        rest = r.path.split(f"/repos/{self.repo}/", 1)[1]
        if rest == "" and r.method == "GET":
            return r.reply(200, {"full_name": self.repo, "private": True}, limits)
        with self.lock:
            if r.method == "GET" and (m := re.fullmatch(r"releases/tags/(.+)", rest)):
                release = next((x for x in self.releases.values() if x["tag_name"] == m[1]), None)
                if release is None:
                    return r.reply(404, {"message": "Not Found"}, limits)
                shown = self._release_json(release)
                etag = '"' + hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest() + '"'
                if r.header("If-None-Match") == etag:  # conditional request: unchanged
                    self.not_modified += 1  # the lock is held
                    return r.reply(304, None, {**limits, "ETag": etag})
                return r.reply(200, shown, {**limits, "ETag": etag})
            if r.method == "PATCH" and (m := re.fullmatch(r"releases/(\d+)", rest)):
                release = self.releases.get(int(m[1]))
                if release is None:
                    return r.reply(404, {"message": "Not Found"}, limits)
                payload = json.loads(r.body or b"{}")
                if len(payload.get("body") or "") > self.max_body_chars:
                    return r.reply(422, {"message": "Validation Failed", "errors": [
                        {"resource": "Release", "code": "custom", "field": "body",
                         "message": "body is too long (maximum is 125000 characters)"}]}, limits)
                release.update({k: v for k, v in payload.items() if k in ("body", "name")})
                return r.reply(200, self._release_json(release), limits)
            if r.method == "POST" and rest == "releases" and r.path.startswith(api):
                payload = json.loads(r.body or b"{}")
                tag = payload.get("tag_name")
                if not tag:
                    return r.reply(422, {"message": "Validation Failed", "errors": [
                        {"resource": "Release", "code": "missing_field", "field": "tag_name"}]})
                if any(x["tag_name"] == tag for x in self.releases.values()):
                    return r.reply(422, {"message": "Validation Failed", "errors": [
                        {"resource": "Release", "code": "already_exists", "field": "tag_name"}]})
                release_id = self._id()
                release = {
                    "id": release_id, "tag_name": tag, "name": payload.get("name"),
                    "body": payload.get("body"), "draft": bool(payload.get("draft")),
                    "prerelease": bool(payload.get("prerelease")),
                    "make_latest": payload.get("make_latest", "true"),
                    "url": f"{self.origin}{api}/releases/{release_id}",
                    "upload_url": f"{self.origin}{uploads}/releases/{release_id}/assets"
                                  "{?name,label}",
                }
                self.releases[release_id] = release
                return r.reply(201, self._release_json(release), limits)
            if m := re.fullmatch(r"releases/(\d+)/assets", rest):
                release_id = int(m[1])
                if release_id not in self.releases:
                    return r.reply(404, {"message": "Not Found"}, limits)
                if r.method == "GET" and r.path.startswith(api):
                    items = [self._public(a) for a in sorted(self.assets.values(),
                                                             key=lambda a: a["id"])
                             if a["_release"] == release_id]
                    chunk, headers = self.page(items, r.raw_path, r.query)
                    return r.reply(200, chunk, {**limits, **headers})
                if r.method == "POST" and r.path.startswith(uploads):
                    name = r.query.get("name", "")
                    if not name:
                        return r.reply(422, {"message": "Validation Failed"})
                    if any(a["name"] == name and a["_release"] == release_id
                           for a in self.assets.values()):
                        return r.reply(422, {"message": "Validation Failed", "errors": [
                            {"resource": "ReleaseAsset", "code": "already_exists",
                             "field": "name"}]}, limits)
                    if r.header("Content-Type") is None:
                        return r.reply(422, {"message": "Validation Failed: Content-Type"})
                    asset_id = self._id()
                    asset = {
                        "id": asset_id, "name": name, "size": len(r.body), "state": "uploaded",
                        "content_type": r.header("Content-Type"), "created_at": _now(),
                        "updated_at": _now(), "url": f"{self.origin}{api}/releases/assets/{asset_id}",
                        "browser_download_url": f"{self.origin}/download/{asset_id}",
                        "_release": release_id, "_data": r.body,
                    }
                    self.assets[asset_id] = asset
                    return r.reply(201, self._public(asset), limits)
            if m := re.fullmatch(r"releases/assets/(\d+)", rest):
                asset = self.assets.get(int(m[1]))
                if asset is None:
                    return r.reply(404, {"message": "Not Found"}, limits)
                if r.method == "DELETE":
                    del self.assets[asset["id"]]
                    return r.reply(204, None, limits)
                if r.method == "GET":
                    if r.header("Accept") == "application/octet-stream":
                        return r.reply(302, None, {**limits, "Location":
                                                   f"{self.origin}/download/{asset['id']}"})
                    return r.reply(200, self._public(asset), limits)
        r.reply(404, {"message": "Not Found"}, limits)


# ---------------------------------------------------------------------------- GitLab


class FakeGitLabPackages(FakeForge):
    """Generic packages of one project, served as GitLab's API v4."""

    def __init__(self, project_path: str = "acme/assistant", project_id: int = 42,
                 token: str = GITLAB_TOKEN, job_token: str = JOB_TOKEN) -> None:
        super().__init__()
        self.project_path, self.project_id = project_path, project_id
        self.token, self.job_token = token, job_token
        self.duplicates_allowed = True
        self.packages: dict[int, dict[str, Any]] = {}
        self.files: dict[int, dict[str, Any]] = {}
        self.next_id = 500

    @property
    def api_url(self) -> str:
        return self.origin + "/api/v4"

    def file_names(self, version: str | None = None) -> list[str]:
        with self.lock:
            return sorted(f["file_name"] for f in self.files.values()
                          if version is None or self.packages[f["package_id"]]["version"] == version)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _public(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    def route(self, r: Request) -> None:
        if r.header("PRIVATE-TOKEN") != self.token and r.header("JOB-TOKEN") != self.job_token:
            return r.reply(401, {"message": "401 Unauthorized"})
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/(.*)", r.raw_path)  # the path is %2F-encoded
        if not m or unquote(m[1]) not in (self.project_path, str(self.project_id)):
            return r.reply(404, {"message": "404 Project Not Found"})
        rest = "/".join(unquote(part) for part in m[2].split("/"))
        with self.lock:
            if g := re.fullmatch(r"packages/generic/([^/]+)/([^/]+)/([^/]+)", rest):
                name, version, file_name = g[1], g[2], g[3]
                package = next((p for p in self.packages.values()
                                if p["name"] == name and p["version"] == version), None)
                files = sorted((f for f in self.files.values()
                                if package and f["package_id"] == package["id"]
                                and f["file_name"] == file_name), key=lambda f: f["id"])
                if r.method in ("GET", "HEAD"):
                    if not files:
                        return r.reply(404, {"message": "404 Package Not Found"})
                    return r.reply(200, raw=files[-1]["_data"])
                if r.method == "PUT":
                    if not re.fullmatch(r"(\.?[\w+-]+\.?)+", version):
                        return r.reply(400, {"message": "version is invalid"})
                    if files and not self.duplicates_allowed:
                        return r.reply(403, {"message": "403 Forbidden - Duplicate package is"
                                                        " not allowed"})
                    if package is None:
                        package = {"id": self._id(), "name": name, "version": version,
                                   "package_type": "generic", "created_at": _now()}
                        self.packages[package["id"]] = package
                    item = {"id": self._id(), "package_id": package["id"], "created_at": _now(),
                            "file_name": file_name, "size": len(r.body), "_data": r.body}
                    self.files[item["id"]] = item
                    if r.query.get("select") == "package_file":
                        return r.reply(201, self._public(item))
                    return r.reply(201, {"message": "201 Created"})
            if rest == "packages" and r.method == "GET":
                wanted = r.query.get("package_name", "")
                items = [p for p in sorted(self.packages.values(), key=lambda p: p["id"])
                         if wanted in p["name"]
                         and r.query.get("package_type", "generic") == p["package_type"]]
                chunk, headers = self.page(items, r.raw_path, r.query)
                return r.reply(200, chunk, headers)
            if p := re.fullmatch(r"packages/(\d+)(?:/package_files(?:/(\d+))?)?", rest):
                package = self.packages.get(int(p[1]))
                if package is None:
                    return r.reply(404, {"message": "404 Not found"})
                if rest.endswith("/package_files") and r.method == "GET":
                    items = [self._public(f) for f in sorted(self.files.values(),
                                                             key=lambda f: f["id"])
                             if f["package_id"] == package["id"]]
                    chunk, headers = self.page(items, r.raw_path, r.query)
                    return r.reply(200, chunk, headers)
                if p[2] and r.method == "DELETE":
                    if self.files.pop(int(p[2]), None) is None:
                        return r.reply(404, {"message": "404 Not found"})
                    return r.reply(204)
                if not p[2] and "package_files" not in rest and r.method == "DELETE":
                    for file_id in [f["id"] for f in self.files.values()
                                    if f["package_id"] == package["id"]]:
                        del self.files[file_id]
                    del self.packages[package["id"]]
                    return r.reply(204)
        r.reply(404, {"message": "404 Not Found"})
