"""pipeline.github against a real local HTTP server faking GitHub's issue-comments API."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline import github
from pipeline.errors import DeltatrainError

from tests.fake_github import PR, REPO, TOKEN, FakeGitHub
def upsert(fake: FakeGitHub, body: str, token: str = TOKEN, pr: int = PR) -> str:
    """Call upsert_pr_comment against the fake server."""
    return github.upsert_pr_comment(fake.base_url, REPO, pr, body, token)


def test_first_upsert_creates_then_updates_the_same_comment(fake_github: FakeGitHub) -> None:
    other = fake_github.add(PR, "LGTM", user="alice")

    first_url = upsert(fake_github, "decision: full")
    assert len(fake_github.marked(PR)) == 1
    comment = fake_github.marked(PR)[0]
    assert first_url == comment["html_url"]
    assert comment["body"].startswith(github.render_marker())
    assert "decision: full" in comment["body"]

    second_url = upsert(fake_github, "decision: skip")
    assert second_url == first_url
    assert len(fake_github.marked(PR)) == 1
    assert "decision: skip" in fake_github.marked(PR)[0]["body"]
    assert "decision: full" not in fake_github.marked(PR)[0]["body"]
    assert [c["body"] for c in fake_github.comments[PR]].count("LGTM") == 1
    assert other["body"] == "LGTM" and other["user"]["login"] == "alice"
    assert [m for m, _ in fake_github.requests].count("POST") == 1
    assert [m for m, _ in fake_github.requests].count("PATCH") == 1


def test_pagination_finds_the_marker_on_page_two(fake_github: FakeGitHub) -> None:
    fake_github.add(PR, "first", user="alice")
    fake_github.add(PR, "second", user="bob")
    mine = fake_github.add(PR, f"{github.COMMENT_MARKER}\nold report", user="github-actions[bot]")
    fake_github.add(PR, "fourth", user="carol")

    url = upsert(fake_github, "new report")

    assert url == mine["html_url"]
    assert mine["body"] == f"{github.COMMENT_MARKER}\nnew report"
    assert len(fake_github.comments[PR]) == 4
    gets = [path for method, path in fake_github.requests if method == "GET"]
    assert len(gets) == 2 and "page=2" in gets[1]
    assert [m for m, _ in fake_github.requests if m in ("POST", "PATCH")] == ["PATCH"]


def test_comments_on_other_pull_requests_are_left_alone(fake_github: FakeGitHub) -> None:
    elsewhere = fake_github.add(8, f"{github.COMMENT_MARKER}\nreport for PR 8", user="github-actions[bot]")

    upsert(fake_github, "report for PR 7")

    assert elsewhere["body"].endswith("report for PR 8")
    assert len(fake_github.marked(PR)) == 1


def test_forbidden_explains_the_permission_and_hides_the_token(fake_github: FakeGitHub) -> None:
    fake_github.mode = "forbidden"

    with pytest.raises(DeltatrainError) as caught:
        upsert(fake_github, "report")

    error = caught.value
    assert "pull-requests: write" in str(error)
    assert "403" in error.message and "Resource not accessible by integration" in error.message
    assert fake_github.base_url in str(error.location)
    for text in (str(error), repr(error), error.render(), str(error.hint)):
        assert TOKEN not in text
    assert fake_github.comments == {}


def test_bad_token_is_rejected_without_echoing_it(fake_github: FakeGitHub) -> None:
    with pytest.raises(DeltatrainError) as caught:
        upsert(fake_github, "report", token="wrong-token-123")

    assert "401" in caught.value.message and "github-token" in str(caught.value.hint)
    assert "wrong-token-123" not in str(caught.value)


def test_empty_token_fails_before_any_request(fake_github: FakeGitHub) -> None:
    with pytest.raises(DeltatrainError, match="no GitHub token"):
        upsert(fake_github, "report", token="")
    assert fake_github.requests == []


def test_unreachable_api_is_a_deltatrain_error() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    closed_url = f"http://127.0.0.1:{server.server_address[1]}"
    server.server_close()

    with pytest.raises(DeltatrainError) as caught:
        github.upsert_pr_comment(closed_url, REPO, PR, "report", TOKEN)

    assert isinstance(caught.value.__cause__, requests.RequestException)
    assert "GITHUB_API_URL" in str(caught.value.hint)
    assert TOKEN not in str(caught.value)


def test_a_given_session_is_used_and_left_open(fake_github: FakeGitHub) -> None:
    with requests.Session() as session:
        github.upsert_pr_comment(fake_github.base_url, REPO, PR, "report", TOKEN, session=session)
        github.upsert_pr_comment(fake_github.base_url, REPO, PR, "report 2", TOKEN, session=session)
    assert len(fake_github.marked(PR)) == 1


@pytest.mark.parametrize("repository", ["", "octo", "octo/", "/assistant", "a/b/c"])
def test_repository_must_be_owner_slash_name(repository: str) -> None:
    with pytest.raises(DeltatrainError, match="owner/name"):
        github.upsert_pr_comment("http://127.0.0.1:9", repository, PR, "report", TOKEN)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param({"number": 5, "pull_request": {"number": 5}}, 5, id="pull_request"),
        pytest.param({"pull_request": {"number": 12}}, 12, id="pull_request-object-only"),
        pytest.param({"number": 9, "pull_request": {}}, 9, id="pull_request-top-level-number"),
        pytest.param({"issue": {"number": 3, "pull_request": {"url": "x"}}}, 3, id="comment-on-pr"),
        pytest.param({"issue": {"number": 3}}, None, id="comment-on-issue"),
        pytest.param({"ref": "refs/heads/main", "commits": []}, None, id="push"),
        pytest.param({}, None, id="empty"),
        pytest.param({"pull_request": {"number": "5"}}, None, id="number-not-int"),
        pytest.param({"pull_request": {"number": True}}, None, id="number-bool"),
    ],
)
def test_find_pr_number(event: dict[str, Any], expected: int | None) -> None:
    assert github.find_pr_number(event) == expected


def test_render_comment_body_adds_the_marker_once() -> None:
    body = github.render_comment_body("hello")
    assert body == f"{github.render_marker()}\nhello"
    assert github.render_comment_body(body) == body
    assert github.render_marker() == "<!-- deltatrain-report -->"


def test_read_github_context_from_actions_environment(tmp_path: Path) -> None:
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps({"number": 42, "pull_request": {"number": 42}}))
    environ = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": "https://ghe.example/api/v3/",
        "GITHUB_SERVER_URL": "https://ghe.example",
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_SHA": "abc123",
        "GITHUB_REF": "refs/pull/42/merge",
        "GITHUB_RUN_ID": "99",
    }

    context = github.read_github_context(environ)

    assert context.is_actions
    assert context.api_url == "https://ghe.example/api/v3"
    assert context.repository == REPO
    assert context.event_name == "pull_request"
    assert context.pr_number == 42
    assert (context.sha, context.ref) == ("abc123", "refs/pull/42/merge")
    assert context.run_url == f"https://ghe.example/{REPO}/actions/runs/99"


def test_read_github_context_outside_actions() -> None:
    context = github.read_github_context({})
    assert context == github.GitHubContext()
    assert context.api_url == "https://api.github.com"
    assert not context.is_actions and context.pr_number is None and context.run_url is None


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(None, "cannot read", id="missing-file"),
        pytest.param("{not json", "not valid JSON", id="invalid-json"),
        pytest.param("[1, 2]", "JSON object; received list", id="not-an-object"),
    ],
)
def test_bad_event_payload_is_an_error_not_an_empty_event(
    tmp_path: Path, content: str | None, match: str
) -> None:
    event_path = tmp_path / "event.json"
    if content is not None:
        event_path.write_text(content)
    with pytest.raises(DeltatrainError, match=match) as caught:
        github.read_github_context({"GITHUB_EVENT_PATH": str(event_path)})
    assert caught.value.location == str(event_path)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"message": "plain"}, "::error::plain", id="plain"),
        pytest.param({"message": "a\nb 100%"}, "::error::a%0Ab 100%25", id="escaped-message"),
        pytest.param(
            {"message": "m", "title": "t: x, y", "file": "data/nlu.yml", "line": 4},
            "::error title=t%3A x%2C y,file=data/nlu.yml,line=4::m",
            id="properties",
        ),
        pytest.param({"message": "w", "level": "warning"}, "::warning::w", id="warning"),
    ],
)
def test_render_error_command(kwargs: dict[str, Any], expected: str) -> None:
    assert github.render_error_command(**kwargs) == expected


def test_pr_comment_without_repository_is_skipped_with_a_note(tmp_path: Path) -> None:
    import io

    from pipeline.cli import Console, _comment_on_pr

    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps({"pull_request": {"number": 5}}))
    environ = {"GITHUB_EVENT_PATH": str(event_path), "GITHUB_TOKEN": TOKEN}  # GITHUB_REPOSITORY missing
    err = io.StringIO()
    _comment_on_pr(environ, "summary", Console(environ, out=io.StringIO(), err=err))
    assert err.getvalue() == "deltatrain: GITHUB_REPOSITORY not set: no PR comment\n"
