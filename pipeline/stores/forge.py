"""What the GitHub and GitLab stores share: one retrying session, JSON calls, pagination, errors.

Both forges keep the store as a flat set of named files (release assets, package
files); :func:`flatten` maps a store key onto such a name and back. Every call goes
through :func:`pipeline.stores.http.make_session`, so 429/5xx answers, dropped
connections and ``Retry-After`` / ``x-ratelimit-reset`` are retried by urllib3.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast
from urllib.parse import urlsplit

from pipeline.errors import StoreAuthError, StoreError, StoreNotFoundError
from pipeline.stores.http import (
    MAX_WAIT_ENV,
    RetryPolicy,
    make_session,
    network_reason,
    rate_limit_wait,
    stream_to_file,
)
from pipeline.stores.backend import CAS_ATTEMPTS, Backend
from pipeline.stores.layout import MANIFEST_KEY, MODELS_DIR, check_key

if TYPE_CHECKING:
    import requests

#: GitHub: "wait for at least one minute" after a secondary rate limit that names no time.
SECONDARY_WAIT = 60.0
#: The forges' retry policy: rate limits are waited out up to ``max_wait`` seconds.
FORGE_RETRY = RetryPolicy(secondary_wait=SECONDARY_WAIT)

SEPARATOR = "--"
PAGE_SIZE = 100
_CHUNK = 1024 * 1024
#: Manifest generations are immutable files ``manifest.<generation>[.<writer>].json``.
MANIFEST_FILE_RE = re.compile(r"manifest\.(\d{1,12})(?:\.([0-9a-f]{32}))?\.json")


def forge_retry(environ: Mapping[str, str]) -> RetryPolicy:
    """FORGE_RETRY with the longest rate-limit wait from DELTATRAIN_RATE_LIMIT_MAX_WAIT (seconds)."""
    text = environ.get(MAX_WAIT_ENV, "").strip()
    if not text:
        return FORGE_RETRY
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise StoreError(f"{MAX_WAIT_ENV} must be a number of seconds >= 0, received {text!r}",
                         hint=f"e.g. {MAX_WAIT_ENV}=600 to sit out rate limits of up to 10 minutes")
    return replace(FORGE_RETRY, max_wait=seconds)


def flatten(key: str) -> str:
    """``models/x/model.tar.gz`` -> ``models--x--model.tar.gz`` (a forge file name)."""
    return check_key(key).replace("/", SEPARATOR)


def model_key_of(file_name: str) -> str | None:
    """The ``models/<name>/<file>`` key a flattened file name stands for, else None."""
    prefix = MODELS_DIR + SEPARATOR
    if not file_name.startswith(prefix) or SEPARATOR not in file_name[len(prefix):]:
        return None
    name, file = file_name[len(prefix):].rsplit(SEPARATOR, 1)
    return f"{MODELS_DIR}/{name}/{file}"


class ReadOnlyTokenError(StoreAuthError):
    """A write refused with 403 in a pull-request run: the token is read-only (e.g. a fork's).

    ``ci`` reports it and goes on without uploading instead of failing the job."""


#: Events whose token GitHub makes read-only for pull requests from forks.
PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_review", "pull_request_review_comment"})


class ForgeClient:
    """A retrying requests session bound to one API origin; never sends its token elsewhere."""

    def __init__(
        self,
        api_url: str,
        headers: Mapping[str, str],
        *,
        service: str,
        token_hint: str,
        retry: RetryPolicy = FORGE_RETRY,
        timeout: tuple[float, float] = (10.0, 300.0),
        secret: str | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.service = service
        self.token_hint = token_hint
        self.retry = retry
        self.timeout = timeout
        self.requests_sent = 0  # counted for the measurements (requests per skip decision)
        self._secret = secret
        self._origin = _origin(self.api_url)
        self.session = make_session(retry, user_agent="deltatrain-store")
        self.session.headers.update(headers)

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        allow: tuple[int, ...] = (),
        what: str,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one call (retried by the session); HTTP errors outside ``allow`` raise."""
        import requests

        if _origin(url) not in (self._origin, *self.extra_origins()):
            raise StoreError(
                f"{self.service} pointed deltatrain at another host; refusing to send the token",
                location=url,
                hint=f"check the API URL (now {self.api_url})",
            )
        kwargs.setdefault("timeout", self.timeout)
        for attempt in range(1, self.retry.attempts + 1):
            self.requests_sent += 1
            try:
                response = self.session.request(method, url, **kwargs)
            except requests.RequestException as exc:
                raise StoreError(
                    f"{method} {url} failed after {self.retry.attempts} attempt(s):"
                    f" {network_reason(exc)}",
                    location=url,
                    hint=f"check that {self.service} is reachable (tried {self.retry.attempts}"
                    " times with backoff)",
                ) from exc
            wait = self._secondary_limit_wait(response)
            if wait is None or wait > self.retry.max_wait or attempt == self.retry.attempts:
                break
            response.close()
            time.sleep(wait)  # a 403 secondary rate limit: urllib3 cannot read the message
            if hasattr(kwargs.get("data"), "seek"):
                kwargs["data"].seek(0)
        if response.status_code >= 400 and response.status_code not in allow:
            self.raise_for(response, method, url, what)
        return response

    def extra_origins(self) -> tuple[str, ...]:
        """Other origins the token may go to (GitHub's uploads host)."""
        return ()

    def _secondary_limit_wait(self, response: requests.Response) -> float | None:
        """The wait for a 403 that only its message marks as a secondary rate limit (GitHub
        sends some without Retry-After or x-ratelimit-remaining: 0); None for anything else."""
        if response.status_code != 403 or self._rate_limit_wait(response) is not None:
            return None
        if "secondary rate limit" not in self.message(response).lower():
            return None
        return self.retry.secondary_wait if self.retry.secondary_wait is not None else SECONDARY_WAIT

    def _rate_limit_wait(self, response: requests.Response) -> float | None:
        return rate_limit_wait(response.status_code, response.headers,
                               secondary_wait=self.retry.secondary_wait, now=time.time())

    def json(self, method: str, url: str, *, what: str, **kwargs: Any) -> Any:
        """A call whose answer is JSON."""
        response = self.request(method, url, what=what, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise StoreError(
                f"{self.service} answered {method} {url} with a body that is not JSON",
                location=url,
                hint="check the API URL",
            ) from exc

    def pages(self, url: str, *, what: str, params: Mapping[str, Any] | None = None
              ) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, following ``Link: rel="next"``."""
        next_url: str | None = url
        query: Mapping[str, Any] | None = {"per_page": PAGE_SIZE, **(params or {})}
        seen: set[str] = set()
        while next_url is not None and next_url not in seen:
            seen.add(next_url)
            response = self.request("GET", next_url, what=what, params=query)
            query = None  # the next link carries the query
            try:
                page = response.json()
            except ValueError as exc:
                raise StoreError(f"{self.service} answered with a body that is not JSON",
                                 location=next_url) from exc
            if not isinstance(page, list):
                raise StoreError(
                    f"{self.service} answered with {type(page).__name__}, expected a list",
                    location=next_url,
                )
            yield from (item for item in page if isinstance(item, dict))
            next_url = response.links.get("next", {}).get("url")

    def download(self, url: str, path: Path, *, what: str, **kwargs: Any) -> None:
        """Stream a file into ``path``."""
        with self.request("GET", url, what=what, stream=True, **kwargs) as response:
            stream_to_file(response, path, what=what, location=url)

    def raise_for(self, response: requests.Response, method: str, url: str, what: str) -> None:
        """Translate an error answer into a store error with a fix."""
        status = response.status_code
        detail = self.message(response)
        received = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status == 401:
            raise StoreAuthError(
                f"{self.service} rejected the token for {what} ({received})",
                location=f"{method} {url}",
                hint=self.token_hint,
            )
        wait = self._rate_limit_wait(response) if status in (403, 429) else None
        if wait is None and status == 403:
            wait = self._secondary_limit_wait(response)
        if wait is not None:
            reset = response.headers.get("x-ratelimit-reset", "")
            until = (f" until {datetime.fromtimestamp(int(reset), UTC):%H:%M:%S} UTC"
                     if response.headers.get("x-ratelimit-remaining") == "0" and reset.isdigit()
                     else "")
            kind = ("the API rate limit is used up" + until if until
                    else "a secondary rate limit (too many requests in a short time)")
            waited = (f"it asks for a {wait:.0f} s wait, more than the {self.retry.max_wait:.0f} s"
                      " this job may wait" if wait > self.retry.max_wait
                      else f"still limited after {self.retry.attempts} attempts")
            raise StoreError(
                f"{self.service} refused {what}: {kind}; {waited} ({received})",
                location=f"{method} {url}",
                hint=f"run the job again later, or let it wait longer with {MAX_WAIT_ENV}=SECONDS;"
                " a token with a higher limit (a GitHub App or a personal token) also helps",
            )
        if status == 403 and method in ("POST", "PUT", "PATCH", "DELETE") and (
            os.environ.get("GITHUB_EVENT_NAME") in PULL_REQUEST_EVENTS
        ):
            raise ReadOnlyTokenError(
                f"{self.service} refused {what} in a pull-request run ({received}): the job's"
                " token is read-only (always so for pull requests from forks)",
                location=f"{method} {url}",
                hint="nothing to do for a fork's pull request: its model is trained, tested and"
                " gated but not uploaded; for pull requests from this repository grant"
                " `permissions: contents: write`, or run with --no-upload",
            )
        if status == 403:
            raise StoreAuthError(
                f"{self.service} refused {what} ({received})",
                location=f"{method} {url}",
                hint=self.token_hint,
            )
        if status == 404:
            raise StoreNotFoundError(
                f"{self.service} found nothing at {what} ({received})",
                location=f"{method} {url}",
                hint="check the store URL; a token without access to a private project also"
                " gets 404",
            )
        raise StoreError(
            f"{self.service} failed {what} ({received})",
            location=f"{method} {url}",
            hint=f"retry the job (429/5xx answers were tried {self.retry.attempts} times)",
        )

    def message(self, response: requests.Response) -> str:
        """The service's error message from a JSON body, without the token."""
        try:
            data = response.json()
        except ValueError:
            return ""
        message = data.get("message") if isinstance(data, dict) else None
        if isinstance(data, dict) and isinstance(data.get("errors"), list):
            codes = [e.get("code") for e in data["errors"] if isinstance(e, dict)]
            message = f"{message} ({', '.join(str(c) for c in codes if c)})" if codes else message
        text = json.dumps(message)[1:-1][:200] if message else ""
        return text.replace(self._secret, "***") if self._secret else text


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def write_manifest_generation(backend: Backend, data: bytes) -> None:
    """A plain write of the manifest on a store whose manifest is a chain of generations: a
    compare-and-swap onto the newest generation, retried at most CAS_ATTEMPTS times."""
    for _ in range(CAS_ATTEMPTS):
        current = backend.get_versioned(MANIFEST_KEY)
        if backend.put_if_version(MANIFEST_KEY, data, current.version if current else None):
            return
    raise StoreError(
        f"{MANIFEST_KEY} changed {CAS_ATTEMPTS} times while this run tried to write it",
        location=backend.describe(MANIFEST_KEY),
        hint="another pipeline keeps publishing to this store; run the step again",
    )


def parse_time(text: str) -> datetime:
    """A forge API timestamp (ISO 8601, ``Z`` for UTC); now when it cannot be read (orders only)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)


class ReplacingWrites:
    """The writes both forge backends share: the manifest becomes a new generation
    (:func:`write_manifest_generation`), any other key is replaced by the backend's ``_replace``
    with a body opened per attempt."""

    def _replace(self, key: str, body: Callable[[], Any], size: int) -> None:
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        """Replace the key's file; for the manifest, write a new generation."""
        if key == MANIFEST_KEY:
            write_manifest_generation(cast("Backend", self), data)
            return
        self._replace(key, lambda: data, len(data))

    def put_file(self, key: str, path: Path) -> None:
        """Replace the key's file with a local file, streamed from disk."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise StoreError(f"cannot read {path} to upload it: {exc.strerror}",
                             location=str(path)) from exc
        self._replace(key, lambda: open(path, "rb"), size)
