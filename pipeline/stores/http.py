"""Model store over plain HTTP(S): GET/PUT/HEAD/DELETE of raw bytes under a base URL.

Works with nginx WebDAV (parent collections are created with MKCOL when the
server answers 409), Artifactory and Nexus generic/raw repositories, and any
server that stores a PUT body at its URL. The token travels only in the
``Authorization: Bearer`` header and never appears in messages or ``repr``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from urllib3.exceptions import MaxRetryError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry

from pipeline.errors import StoreAuthError, StoreError, StoreNotFoundError
from pipeline.stores.backend import BackendOptions, Conditional, Versioned, content_version, too_large
from pipeline.stores.layout import check_key

if TYPE_CHECKING:
    import requests

TOKEN_ENV = "DELTATRAIN_STORE_TOKEN"
_CHUNK = 1024 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


#: Environment variable: the longest rate-limit wait (seconds) a store may sit out.
MAX_WAIT_ENV = "DELTATRAIN_RATE_LIMIT_MAX_WAIT"


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries; waits ``backoff * 2**n`` seconds (capped) between them.

    Carried out by ``urllib3.util.Retry`` on the session's adapter (see :func:`make_session`),
    which also honours ``Retry-After`` and GitHub's rate-limit headers (:class:`ForgeRetry`).
    """

    attempts: int = 4
    backoff: float = 0.5
    max_delay: float = 8.0
    #: Longest wait a Retry-After or rate-limit reset may ask for before we give up instead.
    max_wait: float = 120.0
    #: Wait after a secondary rate limit that says neither Retry-After nor a reset (GitHub
    #: asks for at least a minute); None: such answers get the ordinary backoff (plain HTTP).
    secondary_wait: float | None = None

    def to_urllib3(self) -> Retry:
        """The equivalent urllib3 Retry (every method, connect/read errors and 429/5xx)."""
        return ForgeRetry(
            total=self.attempts - 1,
            connect=self.attempts - 1,
            read=self.attempts - 1,
            status=self.attempts - 1,
            other=0,
            allowed_methods=None,  # PUT/POST too: every write we make is idempotent or checked
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff,
            backoff_max=self.max_delay,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
            max_wait=self.max_wait,
            secondary_wait=self.secondary_wait,
        )


def rate_limit_wait(
    status: int, headers: Mapping[str, str], *, secondary_wait: float | None, now: float
) -> float | None:
    """Seconds a rate-limited answer asks us to wait, following GitHub's rules; None when the
    answer is not (recognisably) a rate limit.

    ``Retry-After`` first; else, with ``x-ratelimit-remaining: 0``, until ``x-ratelimit-reset``;
    else a 429 is a secondary limit: ``secondary_wait`` (a 403 secondary limit is told apart
    from a refusal by its message only, see :meth:`ForgeClient.request`).
    """
    if status not in (403, 429):
        return None
    after = headers.get("Retry-After", "").strip()
    if after.isdigit():
        return float(after)
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "").strip()
        if reset.isdigit():
            return max(0.0, int(reset) - now) + 1.0
    if status == 429 and secondary_wait is not None:
        return secondary_wait
    return None


class ForgeRetry(Retry):
    """urllib3 Retry that also waits out GitHub's rate limits.

    GitHub answers 403 or 429 with ``Retry-After``, or with ``x-ratelimit-remaining: 0`` and
    the epoch second of the reset in ``x-ratelimit-reset``, or (a secondary limit) with
    neither, asking for at least a minute. Waits longer than ``max_wait`` are not slept: the
    answer is returned at once so the caller can report it. A 403 that is not a rate limit
    is returned untouched (its body says why).
    """

    def __init__(self, *args: Any, max_wait: float = 120.0, secondary_wait: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_wait = max_wait
        self.secondary_wait = secondary_wait

    def new(self, **kwargs: Any) -> ForgeRetry:
        """Copy with changed counters, keeping the rate-limit settings."""
        kwargs.setdefault("max_wait", self.max_wait)
        kwargs.setdefault("secondary_wait", self.secondary_wait)
        return super().new(**kwargs)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        """403 and 429 are looked at in :meth:`increment`, where the headers are known."""
        if status_code in (403, 429):
            return self.total is None or self.total > 0
        return bool(super().is_retry(method, status_code, has_retry_after))

    def increment(self, *args: Any, **kwargs: Any) -> ForgeRetry:
        """Count one more try; a 403/429 that is no rate limit, or asks for longer than
        ``max_wait``, ends the retries here (urllib3 then returns the answer as it is)."""
        response: BaseHTTPResponse | None = kwargs.get("response")
        if response is not None and response.status in (403, 429):
            wait = self._wait_for(response)
            if (wait is None and response.status == 403) or (wait is not None and wait > self.max_wait):
                raise MaxRetryError(kwargs.get("_pool"), kwargs.get("url") or "", None)  # type: ignore[arg-type]
        return super().increment(*args, **kwargs)

    def _wait_for(self, response: BaseHTTPResponse) -> float | None:
        return rate_limit_wait(response.status, response.headers,
                               secondary_wait=self.secondary_wait, now=time.time())

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        """Seconds from ``Retry-After``, else the rate-limit wait (never above ``max_wait``)."""
        seconds = super().get_retry_after(response)
        if seconds is None:
            seconds = self._wait_for(response)
        if seconds is not None and seconds > self.max_wait:
            return None  # too long to wait inside a CI job: report the answer instead
        return seconds

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        """Sleep for the rate-limit wait if there is one, else the backoff."""
        if response is not None:
            seconds = self.get_retry_after(response)
            if seconds is not None:
                time.sleep(seconds)
                return
        self._sleep_backoff()


def stream_to_file(response: requests.Response, path: Path, *, what: str, location: str) -> None:
    """Write a streamed response body to ``path`` in chunks; an interrupted transfer or a file that
    cannot be written is a StoreError naming ``what`` (a store location, never a token)."""
    import requests

    try:
        with open(path, "wb") as out:
            for chunk in response.iter_content(_CHUNK):
                out.write(chunk)
    except requests.RequestException as exc:
        raise StoreError(
            f"download of {what} was interrupted: {network_reason(exc)}",
            location=location,
            hint="retry; if it keeps failing check the network and the store server",
        ) from exc
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}", location=str(path)) from exc


def make_session(retry: RetryPolicy = RetryPolicy(), *, user_agent: str = "deltatrain") -> requests.Session:
    """A requests Session whose adapters retry network errors, 429/5xx and rate limits."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry.to_urllib3())
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


class HttpBackend:
    """Keys are URLs under ``base_url``; one requests Session, retries on 5xx and network errors.

    ``user:password@`` in the URL becomes HTTP Basic auth unless a token is given;
    either way it is removed from every URL we build, show or raise.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        retry: RetryPolicy = RetryPolicy(),
        timeout: tuple[float, float] = (10.0, 120.0),
    ) -> None:

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StoreError(
                f"not an http(s) URL: {_display(base_url)}", hint="use http(s)://host/path/"
            )
        if parts.query or parts.fragment:
            raise StoreError(
                f"store URL must not have a query or fragment: {_display(base_url)}",
                hint=f"pass tokens in {TOKEN_ENV}, not in the URL",
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise StoreError(f"invalid port in store URL {_display(base_url)}") from exc
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6 literal
        netloc = host if port is None else f"{host}:{port}"
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        self.base_url = urlunsplit((parts.scheme, netloc, path, "", ""))
        self.retry = retry
        self.timeout = timeout
        self._token = token
        self._session = make_session(retry, user_agent="deltatrain-store")
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        elif parts.username is not None:
            self._session.auth = (parts.username, parts.password or "")

    def __repr__(self) -> str:
        return f"HttpBackend({self.base_url!r})"

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """GET a whole object (at most ``max_bytes``, checked while it streams in)."""
        return _body(self._get(key, max_bytes)[0], self.describe(key))

    def get_versioned(self, key: str, *, max_bytes: int | None = None) -> Versioned | None:
        """GET an object; its version is the ETag (the content hash if the server sends none)."""
        try:
            found, etag = self._get(key, max_bytes)
        except StoreNotFoundError:
            return None
        data = _body(found, self.describe(key))
        return Versioned(data, etag or content_version(data))

    def get_if_changed(
        self, key: str, token: str | None, *, max_bytes: int | None = None
    ) -> Conditional | None:
        """One GET with ``If-None-Match: <token>``; 304 means unchanged. Without an ETag from
        the server nothing can be cached (token None: the next read is a full GET again)."""
        try:
            data, etag = self._get(key, max_bytes, if_none_match=token)
        except StoreNotFoundError:
            return None
        return Conditional(etag or None, data)

    def put_if_version(self, key: str, data: bytes, expected: str | None) -> bool:
        """PUT with ``If-Match: <etag>`` (or ``If-None-Match: *`` to create); 412 means False.

        A server that sends no ETag cannot compare for us: then the content is re-read
        and compared just before the PUT, which narrows the race but cannot close it
        (use a server with ETags, e.g. nginx, Artifactory, Nexus, for concurrent pipelines).
        """
        if expected is not None and expected.startswith("sha256:"):
            current = self.get_versioned(key)
            if current is None or current.version != expected:
                return False
            headers = {}
        else:
            headers = {"If-None-Match": "*"} if expected is None else {"If-Match": expected}
        status = self._put(key, data=data, headers=headers, allow=(412,))
        return status != 412

    def _get(
        self, key: str, max_bytes: int | None, *, if_none_match: str | None = None
    ) -> tuple[bytes | None, str | None]:
        """The body and ETag; (None, etag) when ``if_none_match`` still matches (304)."""
        import requests

        headers = {"If-None-Match": if_none_match} if if_none_match else None
        with self._send("GET", key, stream=True, headers=headers) as response:
            if response.status_code == 304 and if_none_match:
                return None, response.headers.get("ETag") or if_none_match
            self._check(response, "GET", key)
            length = response.headers.get("Content-Length", "")
            if max_bytes is not None and length.isdigit() and int(length) > max_bytes:
                raise too_large(key, self.describe(key), max_bytes)
            chunks: list[bytes] = []
            received = 0
            try:
                for chunk in response.iter_content(_CHUNK):
                    received += len(chunk)
                    if max_bytes is not None and received > max_bytes:
                        raise too_large(key, self.describe(key), max_bytes)
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise StoreError(
                    f"reading {self.describe(key)} was interrupted: {type(exc).__name__}",
                    location=self.describe(key),
                    hint="retry; if it keeps failing check the network and the store server",
                ) from exc
            return b"".join(chunks), response.headers.get("ETag")

    def put_bytes(self, key: str, data: bytes) -> None:
        """PUT raw bytes."""
        self._put(key, data=data)

    def put_file(self, key: str, path: Path) -> None:
        """PUT a file, streamed from disk with a Content-Length header."""
        self._put(key, path=path)

    def get_to_file(self, key: str, path: Path) -> None:
        """GET an object, streamed to ``path`` in chunks."""
        with self._send("GET", key, stream=True) as response:
            self._check(response, "GET", key)
            stream_to_file(response, path, what=self.describe(key), location=self.describe(key))

    def exists(self, key: str) -> bool:
        """HEAD the key (GET when HEAD is not allowed)."""
        return self._head(key) is not None

    def size(self, key: str) -> int | None:
        """Content-Length from HEAD."""
        length = self._head(key)
        if length is None:
            raise StoreNotFoundError(
                f"not found in the model store: {self.describe(key)}", location=self.describe(key)
            )
        return length if length >= 0 else None

    def delete(self, key: str) -> None:
        """DELETE the key; 404 counts as success."""
        with self._send("DELETE", key) as response:
            if response.status_code != 404:
                self._check(response, "DELETE", key)

    def describe(self, key: str) -> str:
        """Absolute URL of the key, without credentials."""
        return self.base_url + quote(check_key(key), safe="/") if key else self.base_url

    def _head(self, key: str) -> int | None:
        """None when missing, -1 when present with unknown size, else the size."""
        with self._send("HEAD", key) as response:
            status, headers = response.status_code, response.headers
        if status in (405, 501):  # HEAD not allowed: ask with a GET we do not read
            with self._send("GET", key, stream=True) as response:
                status, headers = response.status_code, response.headers
        if status == 404:
            return None
        self._check(response, "HEAD", key)
        length = headers.get("Content-Length", "")
        return int(length) if length.isdigit() else -1

    def _put(
        self,
        key: str,
        *,
        data: bytes | None = None,
        path: Path | None = None,
        headers: dict[str, str] | None = None,
        allow: tuple[int, ...] = (),
    ) -> int:
        with self._send("PUT", key, data=data, path=path, headers=headers) as response:
            pass
        if response.status_code == 409:  # WebDAV: a parent collection is missing
            self._make_collections(key)
            with self._send("PUT", key, data=data, path=path, headers=headers) as response:
                pass
        if response.status_code not in allow:
            self._check(response, "PUT", key)
        return response.status_code

    def _make_collections(self, key: str) -> None:
        parts = check_key(key).split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            with self._send("MKCOL", folder, collection=True) as response:
                pass
            if response.status_code not in (200, 201, 405):  # 405: it already exists
                self._check(response, "MKCOL", folder)

    def _send(
        self,
        method: str,
        key: str,
        *,
        data: bytes | None = None,
        path: Path | None = None,
        stream: bool = False,
        collection: bool = False,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """Send one request; the session's urllib3 Retry retries network errors and 429/5xx."""
        import requests

        url = self.describe(key) + ("/" if collection else "")
        try:
            return self._send_once(method, url, data=data, path=path, stream=stream, headers=headers)
        except requests.RequestException as exc:
            raise StoreError(
                f"{method} {url} failed after {self.retry.attempts} attempt(s):"
                f" {network_reason(exc)}",
                location=url,
                hint="check that the store server is reachable (tried"
                f" {self.retry.attempts} times with backoff)",
            ) from exc

    def _send_once(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None,
        path: Path | None,
        stream: bool,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        if path is None:
            return self._session.request(
                method, url, data=data, stream=stream, timeout=self.timeout, headers=headers
            )
        try:
            body = open(path, "rb")  # reopened per attempt so a retry resends from the start
        except OSError as exc:
            raise StoreError(
                f"cannot read {path} to upload it: {exc.strerror}", location=str(path)
            ) from exc
        with body:
            return self._session.request(
                method, url, data=body, stream=stream, timeout=self.timeout, headers=headers
            )

    def _check(self, response: requests.Response, method: str, key: str) -> None:
        status = response.status_code
        if status < 400:
            return
        url = self.describe(key)
        if status in (401, 403):
            given = "check the token in" if self._token else "set"
            raise StoreAuthError(
                f"the model store refused {method} {url}: HTTP {status}",
                location=url,
                hint=f"{given} {TOKEN_ENV}: it needs read and write access to {self.base_url}"
                " (it is sent as 'Authorization: Bearer <token>')",
            )
        if status == 404:
            raise StoreNotFoundError(
                f"not found in the model store: {url} (HTTP 404)", location=url
            )
        detail = self._body_excerpt(response)
        raise StoreError(
            f"{method} {url} failed: HTTP {status} {response.reason or ''}".rstrip()
            + (f": {detail}" if detail else ""),
            location=url,
            hint=f"check the store server's logs (429/5xx answers are tried {self.retry.attempts}"
            " times with backoff)",
        )

    def _body_excerpt(self, response: requests.Response) -> str:
        try:
            text = " ".join(response.text[:300].split())[:200]
        except Exception:  # the excerpt is a courtesy; never let it become a second failure
            return ""
        return text.replace(self._token, "***") if self._token else text


def network_reason(exc: BaseException) -> str:
    """The name of what went wrong underneath requests' wrapping (e.g. ``ReadTimeoutError``)."""
    from urllib3.exceptions import MaxRetryError

    inner = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        return type(inner.reason).__name__
    return type(exc).__name__


def _body(data: bytes | None, where: str) -> bytes:
    if data is None:  # only a conditional GET can be answered without a body
        raise StoreError(f"{where} answered 304 to an unconditional GET", location=where)
    return data


def _display(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def open_backend(url: str, options: BackendOptions) -> HttpBackend:
    """Build an HttpBackend for an http(s) URL, with the optional bearer token."""
    return HttpBackend(url, token=options.token)
