"""GitHub: the Actions run context, workflow commands, and one PR comment kept up to date.

Pure helpers (``find_pr_number``, ``render_marker``, ``render_error_command``)
build values; escaping and redaction live in :mod:`pipeline.safe_output`, the
output boundary. The I/O functions (``read_github_context``,
``upsert_pr_comment``, ``append_to_file``) touch files or the network and are
called only from the adapters (CLI, Action). HTTP failures are translated here
into :class:`~pipeline.errors.DeltatrainError`; the token never appears in a
message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests

from pipeline.errors import DataError, DeltatrainError, prefix_path
from pipeline.safe_output import CommandName, redact, render_command, render_markdown_code, render_markdown_text
from pipeline.stores.http import make_session

#: Hidden HTML comment that identifies deltatrain's report among PR comments.
COMMENT_MARKER = "<!-- deltatrain-report -->"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_SERVER_URL = "https://github.com"
API_VERSION = "2022-11-28"
#: Seconds to wait for any single GitHub API request.
REQUEST_TIMEOUT = 30.0
PERMISSIONS_DOC = (
    "https://docs.github.com/en/actions/writing-workflows/choosing-what-your-workflow-does/"
    "controlling-permissions-for-github_token"
)


@dataclass(frozen=True)
class GitHubContext:
    """What a GitHub Actions run tells us about itself (all empty outside Actions)."""

    api_url: str = DEFAULT_API_URL
    server_url: str = DEFAULT_SERVER_URL
    repository: str | None = None
    event_name: str | None = None
    event: Mapping[str, Any] = field(default_factory=dict, hash=False)
    sha: str | None = None
    ref: str | None = None
    run_id: str | None = None
    is_actions: bool = False

    @property
    def pr_number(self) -> int | None:
        """Number of the pull request this run is about, if any."""
        return find_pr_number(self.event)

    @property
    def run_url(self) -> str | None:
        """Link to this workflow run's page, if known."""
        if not (self.repository and self.run_id):
            return None
        return f"{self.server_url.rstrip('/')}/{self.repository}/actions/runs/{self.run_id}"


def read_github_context(environ: Mapping[str, str]) -> GitHubContext:
    """Read the Actions context from ``GITHUB_*`` variables and the event payload file."""
    event_path = environ.get("GITHUB_EVENT_PATH") or None
    event = read_event_payload(Path(event_path)) if event_path else {}
    return GitHubContext(
        api_url=(environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
        server_url=(environ.get("GITHUB_SERVER_URL") or DEFAULT_SERVER_URL).rstrip("/"),
        repository=environ.get("GITHUB_REPOSITORY") or None,
        event_name=environ.get("GITHUB_EVENT_NAME") or None,
        event=event,
        sha=environ.get("GITHUB_SHA") or None,
        ref=environ.get("GITHUB_REF") or None,
        run_id=environ.get("GITHUB_RUN_ID") or None,
        is_actions=environ.get("GITHUB_ACTIONS", "").lower() == "true",
    )


def read_event_payload(path: Path) -> dict[str, Any]:
    """Load the webhook payload GitHub writes to ``GITHUB_EVENT_PATH``."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeltatrainError(
            f"cannot read the GitHub event payload: {exc.strerror or exc}",
            location=str(path),
            hint="GITHUB_EVENT_PATH must name the JSON file GitHub Actions writes; "
            "unset it when running outside Actions",
        ) from exc
    except ValueError as exc:
        raise DeltatrainError(
            f"the GitHub event payload is not valid JSON: {exc}",
            location=str(path),
            hint="GITHUB_EVENT_PATH must name the JSON file GitHub Actions writes",
        ) from exc
    if not isinstance(payload, dict):
        raise DeltatrainError(
            f"the GitHub event payload must be a JSON object; received {type(payload).__name__}",
            location=str(path),
        )
    return payload


def find_pr_number(event: Mapping[str, Any]) -> int | None:
    """Pull-request number from an event payload (pull_request*, or a comment on a PR)."""
    pull_request = event.get("pull_request")
    if isinstance(pull_request, Mapping) and _is_number(pull_request.get("number")):
        return int(pull_request["number"])
    if isinstance(pull_request, Mapping) and _is_number(event.get("number")):
        return int(event["number"])
    issue = event.get("issue")
    if isinstance(issue, Mapping) and issue.get("pull_request") and _is_number(issue.get("number")):
        return int(issue["number"])
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def render_marker() -> str:
    """The hidden marker that lets deltatrain find its own PR comment again."""
    return COMMENT_MARKER


def render_comment_body(body: str) -> str:
    """``body`` with the hidden marker as its first line (added once)."""
    return body if COMMENT_MARKER in body else f"{COMMENT_MARKER}\n{body}"


def render_error_command(
    message: str,
    *,
    title: str | None = None,
    file: str | None = None,
    line: int | None = None,
    level: str = "error",
    secrets: tuple[str, ...] = (),
) -> str:
    """One ``::error::`` (or ``::warning::``/``::notice::``) annotation line, escaped and redacted."""
    if level not in ("error", "warning", "notice"):
        raise ValueError(f"level must be one of error, warning, notice; received {level!r}")
    properties = {"title": title, "file": file, "line": line if file else None}
    return render_command(CommandName(level), message, properties, secrets)


def render_error_annotation(error: DeltatrainError, docs_url: str | None = None) -> str:
    """The text of an error's ``::error::`` annotation: what failed, the fix, the docs (escaped where written)."""
    return f"{error.message}\nfix: {error.fix}" + (f"\nsee: {docs_url}" if docs_url else "")


def render_error_summary(
    error: DeltatrainError, docs_url: str | None, secrets: tuple[str, ...] = (), path_prefix: str = ""
) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY`` explaining an error: cause, fix, link (redacted).

    Every problem of a DataError is listed (GitHub shows only the first 10
    annotations of a step), its path seen from the repository root.
    """

    def text(value: object) -> str:
        return render_markdown_text(redact(str(value), secrets))

    lines = ["### :x: deltatrain failed", "", f"**{text(error.message)}**", ""]
    problems = error.problems if isinstance(error, DataError) else ()
    if problems:
        errors = sum(1 for p in problems if p.is_error)
        lines += [f"{errors} error(s), {len(problems) - errors} warning(s):", ""]
        lines += [f"- {text(prefix_path(p.location, path_prefix)) + ': ' if p.location else ''}{p.severity}: {text(p.message)}"
                  + (f" (fix: {text(p.hint)})" if p.hint else "") for p in problems] + [""]
    if error.location:
        lines += [f"- where: {render_markdown_code(redact(str(error.location), secrets))}"]
    lines += [f"- fix: {text(error.fix)}"]
    if docs_url:
        lines += [f"- inputs: {text(docs_url)}"]
    return "\n".join(lines) + "\n"


def append_to_file(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` to a GitHub command file (``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")


def upsert_pr_comment(
    api_url: str,
    repository: str,
    pr_number: int,
    body: str,
    token: str,
    session: requests.Session | None = None,
) -> str:
    """Create or update deltatrain's one comment on a pull request; return its URL."""
    _check_repository(repository)
    if not token:
        raise DeltatrainError(
            "no GitHub token to comment on the pull request",
            hint="pass `github-token` (its default `${{ github.token }}` works) or set GITHUB_TOKEN; "
            "or turn the comment off with `pr-comment: false`",
        )
    base = api_url.rstrip("/")
    text = render_comment_body(body)
    http = session if session is not None else make_session()  # retries 5xx and rate limits
    try:
        existing = _find_marked_comment(http, base, repository, pr_number, token)
        if existing is None:
            url = f"{base}/repos/{repository}/issues/{pr_number}/comments"
            created = _request(http, "POST", url, token, payload={"body": text})
        else:
            url = f"{base}/repos/{repository}/issues/comments/{existing}"
            created = _request(http, "PATCH", url, token, payload={"body": text})
    finally:
        if session is None:
            http.close()
    comment = _json(created, url)
    html_url = comment.get("html_url") if isinstance(comment, dict) else None
    if not isinstance(html_url, str):
        raise DeltatrainError(
            "GitHub answered without the comment's html_url", location=url
        )
    return html_url


def _check_repository(repository: str) -> None:
    owner, _, name = repository.partition("/")
    if not owner or not name or "/" in name:
        raise DeltatrainError(
            f"repository must look like `owner/name`; received {repository!r}",
            hint="GitHub Actions sets GITHUB_REPOSITORY; set it by hand outside Actions",
        )


def _find_marked_comment(
    http: requests.Session, base: str, repository: str, pr_number: int, token: str
) -> int | None:
    """Id of the first comment carrying the marker, following ``Link: rel="next"``."""
    url: str | None = f"{base}/repos/{repository}/issues/{pr_number}/comments?per_page=100"
    seen: set[str] = set()
    while url is not None and url not in seen:
        seen.add(url)
        response = _request(http, "GET", url, token)
        page = _json(response, url)
        if not isinstance(page, list):
            raise DeltatrainError(
                f"GitHub answered with {type(page).__name__}, expected a list of comments",
                location=url,
            )
        for comment in page:
            if isinstance(comment, dict) and COMMENT_MARKER in str(comment.get("body") or ""):
                return int(comment["id"])
        url = response.links.get("next", {}).get("url")
        if url is not None and not _same_origin(url, base):
            raise DeltatrainError(
                "GitHub's pagination link points to another host; refusing to send the token there",
                location=url,
                hint=f"check GITHUB_API_URL (now {base})",
            )
    return None


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _request(
    http: requests.Session,
    method: str,
    url: str,
    token: str,
    payload: Mapping[str, Any] | None = None,
) -> requests.Response:
    """One authenticated GitHub API call; HTTP and network failures become DeltatrainError."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }
    try:
        response = http.request(
            method, url, headers=headers, json=payload, timeout=REQUEST_TIMEOUT
        )
    except requests.RequestException as exc:
        raise DeltatrainError(
            f"could not reach the GitHub API ({type(exc).__name__})",
            location=f"{method} {url}",
            hint="check the network and GITHUB_API_URL (on GitHub Enterprise Server it is "
            "https://HOST/api/v3)",
        ) from exc
    if response.status_code >= 400:
        raise _http_error(method, url, response)
    return response


def _http_error(method: str, url: str, response: requests.Response) -> DeltatrainError:
    """Translate an HTTP error answer into a DeltatrainError with a fix."""
    status = response.status_code
    detail = _github_message(response)
    received = f"HTTP {status}" + (f": {detail}" if detail else "")
    where = f"{method} {url}"
    if status == 401:
        return DeltatrainError(
            f"GitHub rejected the token ({received})",
            location=where,
            hint="pass a valid `github-token` (the default `${{ github.token }}` works) "
            "or set GITHUB_TOKEN",
        )
    if status == 403:
        return DeltatrainError(
            f"GitHub refused to let this token comment on the pull request ({received})",
            location=where,
            hint="grant the job `permissions: pull-requests: write`; pull requests from forks "
            "only get a read-only token, so set `pr-comment: false` for them. "
            f"See {PERMISSIONS_DOC}",
        )
    if status == 404:
        return DeltatrainError(
            f"GitHub does not know this repository, pull request or comment ({received})",
            location=where,
            hint="check GITHUB_REPOSITORY and the PR number; a token without access to a "
            "private repository also gets 404",
        )
    if status == 422:
        return DeltatrainError(
            f"GitHub rejected the comment ({received})",
            location=where,
            hint="a comment body may hold at most 65536 characters",
        )
    return DeltatrainError(
        f"the GitHub API failed ({received})",
        location=where,
        hint="retry the job; see https://www.githubstatus.com if it keeps failing",
    )


def _github_message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return str(message) if message else ""


def _json(response: requests.Response, url: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise DeltatrainError(
            f"GitHub answered HTTP {response.status_code} with a body that is not JSON",
            location=url,
        ) from exc
