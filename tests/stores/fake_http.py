"""A real HTTP object store on 127.0.0.1 for tests: GET/PUT/HEAD/DELETE/MKCOL over a dict.

Like a WebDAV or object-store server it sends an ``ETag`` with every GET/HEAD and
honours ``If-Match`` / ``If-None-Match`` on PUT atomically, answering 412 when the
condition fails (``etags = False`` turns both off, as on servers without them).

Faults are rules matched against method and path; each answers with a status,
drops the connection mid-upload, or stalls, for ``times`` requests (None: forever).
"""

from __future__ import annotations

import functools
import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class Fault:
    """Answer matching requests with ``status``; or ``drop`` the upload midway; or ``truncate``
    it (store half, answer 201); and/or ``stall`` seconds first; after ``skip`` requests."""

    method: str
    pattern: str
    status: int | None = None
    drop: bool = False
    truncate: bool = False
    stall: float = 0.0
    times: int | None = None
    skip: int = 0  # let this many matching requests through first
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.method in (method, "*")
            and re.search(self.pattern, path) is not None
            and (self.times is None or self.hits < self.times + self.skip)
        )


class FakeStoreServer:
    """In-memory object store with a request log and controllable faults."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.token: str | None = None
        self.webdav_strict = False  # PUT/MKCOL answer 409 when the parent collection is missing
        self.etags = True  # send ETags and honour If-Match / If-None-Match
        self.not_modified = 0  # conditional GETs answered 304
        self.collections: set[str] = {"/"}
        self.lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str = "/store/") -> str:
        """Absolute URL of ``path`` on this server."""
        return self.origin + path

    def start(self) -> FakeStoreServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add_fault(self, method: str, pattern: str, **kwargs: object) -> Fault:
        """Register a fault rule (first matching rule wins)."""
        fault = Fault(method, pattern, **kwargs)  # type: ignore[arg-type]
        with self.lock:
            self.faults.append(fault)
        return fault

    def requests(self, method: str, pattern: str = "") -> list[str]:
        """Paths of logged requests with this method whose path matches ``pattern``."""
        with self.lock:
            return [p for m, p in self.log if m == method and re.search(pattern, p)]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    if fault.hits <= fault.skip:
                        return None
                    return fault
        return None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out or hang up on purpose are part of the tests


@functools.lru_cache(maxsize=64)  # like a real server, not re-hashed per request (bytes cache their hash)
def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _make_handler(server: FakeStoreServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # headers and body in one write (no Nagle/delayed-ACK stalls)
        disable_nagle_algorithm = True  # headers and body go out in separate writes
        timeout = 10

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_HEAD(self) -> None:
            self._handle("HEAD")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def do_MKCOL(self) -> None:
            self._handle("MKCOL")

        def _handle(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            with server.lock:
                server.log.append((method, path))
            length = int(self.headers.get("Content-Length") or 0)
            fault = server._take_fault(method, path)
            if fault and fault.drop:
                self.rfile.read(min(length, 1024))
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            body = self.rfile.read(length) if length else b""
            if fault and fault.stall:
                time.sleep(fault.stall)
            if fault and fault.truncate:
                body = body[: len(body) // 2]
            if fault and fault.status:
                return self._reply(fault.status, b"injected fault\n")
            if (
                server.token is not None
                and self.headers.get("Authorization") != f"Bearer {server.token}"
            ):
                return self._reply(401, b"unauthorized\n", {"WWW-Authenticate": "Bearer"})
            getattr(self, f"_{method.lower()}")(path, body)

        def _get(self, path: str, body: bytes) -> None:
            with server.lock:
                data = server.files.get(path)
            if data is None:
                return self._reply(404, b"not found\n")
            if server.etags and self.headers.get("If-None-Match") == _etag(data):
                with server.lock:
                    server.not_modified += 1
                return self._reply(304, b"", {"ETag": _etag(data)})  # conditional GET: unchanged
            self._reply(200, data, {"ETag": _etag(data)} if server.etags else None)

        def _head(self, path: str, body: bytes) -> None:
            self._get(path, body)

        def _put(self, path: str, body: bytes) -> None:
            parent = path.rsplit("/", 1)[0] + "/"
            if_match = self.headers.get("If-Match") if server.etags else None
            if_none_match = self.headers.get("If-None-Match") if server.etags else None
            with server.lock:
                current = server.files.get(path)
                if server.webdav_strict and parent not in server.collections:
                    status = 409
                elif if_match is not None and (current is None or _etag(current) != if_match):
                    status = 412
                elif if_none_match == "*" and current is not None:
                    status = 412
                else:
                    status = 201
                    server.files[path] = body
            self._reply(status, b"", {"ETag": _etag(body)} if status == 201 and server.etags else None)

        def _delete(self, path: str, body: bytes) -> None:
            with server.lock:
                found = server.files.pop(path, None) is not None
            self._reply(204 if found else 404, b"")

        def _mkcol(self, path: str, body: bytes) -> None:
            folder = path if path.endswith("/") else path + "/"
            parent = folder.rstrip("/").rsplit("/", 1)[0] + "/"
            with server.lock:
                if folder in server.collections:
                    status = 405
                elif parent not in server.collections:
                    status = 409
                else:
                    server.collections.add(folder)
                    status = 201
            self._reply(status, b"")

        def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler
