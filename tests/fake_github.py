"""A fake GitHub REST API (issue comments) on 127.0.0.1, shared by the tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline import github

TOKEN = "ghs_s3cr3t-token-value"
REPO = "octo/assistant"
PR = 7
PAGE_SIZE = 2


@dataclass
class FakeGitHub:
    """In-memory issue comments for one repository, served like the REST API."""

    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    mode: str = "ok"  # "ok" | "forbidden"
    requests: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 1000
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, pr: int, body: str, user: str) -> dict[str, Any]:
        """Store a comment as if ``user`` had written it; return it."""
        with self.lock:
            self.next_id += 1
            comment = {
                "id": self.next_id,
                "body": body,
                "user": {"login": user},
                "html_url": f"https://github.test/{REPO}/pull/{pr}#issuecomment-{self.next_id}",
            }
            self.comments.setdefault(pr, []).append(comment)
            return comment

    def marked(self, pr: int) -> list[dict[str, Any]]:
        """Comments on ``pr`` carrying deltatrain's marker."""
        return [c for c in self.comments.get(pr, []) if github.COMMENT_MARKER in c["body"]]


def make_handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``fake``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _check(self) -> bool:
            fake.requests.append((self.command, self.path))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, {"message": "Bad credentials"})
                return False
            if self.headers.get("Accept") != "application/vnd.github+json" or (
                self.headers.get("X-GitHub-Api-Version") != github.API_VERSION
            ):
                self._send(400, {"message": "missing GitHub media type or API version"})
                return False
            if fake.mode == "forbidden":
                self._send(403, {"message": "Resource not accessible by integration"})
                return False
            return True

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def _issue_comments_pr(self, path: str) -> int | None:
            parts = path.strip("/").split("/")
            if len(parts) == 6 and "/".join(parts[1:3]) == REPO and parts[3:4] == ["issues"] and parts[5] == "comments":
                return int(parts[4])
            return None

        def do_GET(self) -> None:
            if not self._check():
                return
            url = urlsplit(self.path)
            pr = self._issue_comments_pr(url.path)
            if pr is None:
                self._send(404, {"message": "Not Found"})
                return
            page = int(parse_qs(url.query).get("page", ["1"])[0])
            items = fake.comments.get(pr, [])
            chunk = items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            last = max(1, -(-len(items) // PAGE_SIZE))
            headers = {}
            if page < last:
                link = f"{fake.base_url}{url.path}?per_page={PAGE_SIZE}&page="
                headers["Link"] = f'<{link}{page + 1}>; rel="next", <{link}{last}>; rel="last"'
            self._send(200, chunk, headers)

        def do_POST(self) -> None:
            if not self._check():
                return
            pr = self._issue_comments_pr(urlsplit(self.path).path)
            if pr is None:
                self._send(404, {"message": "Not Found"})
                return
            self._send(201, fake.add(pr, self._body()["body"], user="github-actions[bot]"))

        def do_PATCH(self) -> None:
            if not self._check():
                return
            parts = urlsplit(self.path).path.strip("/").split("/")
            if len(parts) != 6 or parts[3:5] != ["issues", "comments"]:
                self._send(404, {"message": "Not Found"})
                return
            comment_id = int(parts[5])
            for comment in (c for items in fake.comments.values() for c in items):
                if comment["id"] == comment_id:
                    comment["body"] = self._body()["body"]
                    self._send(200, comment)
                    return
            self._send(404, {"message": "Not Found"})

    return Handler


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A fake GitHub API on 127.0.0.1, on a free port, for one test."""
    fake = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


