"""The CI step against real servers: HTTP store with faults, PR comment, gate and fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import git
import pytest

from pipeline.cli import main
from tests.stores.fake_http import FakeStoreServer
from tests.fake_github import REPO, TOKEN, FakeGitHub
from tests.helpers import copy_into_git_repo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "assistant"
TINY = ["--epochs", "2"]
STORE_TOKEN = "s3cr3t-store-token"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repo of the example assistant after one full CI run into the local store."""
    work = tmp_path_factory.mktemp("ci") / "assistant"
    copy_into_git_repo(EXAMPLE, work)
    assert main(["ci", "-C", str(work), *TINY], environ={}) == 0
    return work


def _clone(first_run: Path, tmp_path: Path) -> tuple[Path, git.Repo]:
    work = tmp_path / "assistant"
    shutil.copytree(first_run, work)
    return work, git.Repo(work)


def _add_examples(work: Path, repo: git.Repo) -> None:
    nlu = work / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace("    - cya\n", "    - cya\n    - farewell\n"))
    repo.git.add(A=True)
    repo.index.commit("one more goodbye")


def _manifest(work: Path) -> dict:
    return json.loads((work / ".deltatrain" / "store" / "manifest.json").read_text())


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


def test_scheduled_run_retrains_in_full(first_run: Path, tmp_path: Path) -> None:
    work, _ = _clone(first_run, tmp_path)
    report = tmp_path / "report.json"
    code = main(["ci", "-C", str(work), *TINY, "--no-upload", "--report-json", str(report)],
                environ={"GITHUB_EVENT_NAME": "schedule"})
    assert code == 0
    data = _report(report)
    assert data["decision"] == "full" and "scheduled" in data["reasons"][0]
    assert data["uploaded"] is False


def test_gate_failure_falls_back_to_full_then_keeps_the_good_model(first_run: Path, tmp_path: Path) -> None:
    work, repo = _clone(first_run, tmp_path)
    previous = _manifest(work)["latest"]
    metrics_file = work / ".deltatrain" / "store" / "models" / previous / "metrics.json"
    metrics_file.write_text(json.dumps({"intent_f1": 1.0, "entity_f1": 1.0, "story_accuracy": 1.0}))
    _add_examples(work, repo)
    report = tmp_path / "report.json"
    code = main(["ci", "-C", str(work), *TINY, "--max-drop", "0", "--min-intent-f1", "0.999",
                 "--report-json", str(report)], environ={})
    data = _report(report)
    assert code == 3
    assert data["fell_back_to_full"] is True
    assert data["decision"] == "full"
    assert any("failed the quality gate" in r for r in data["reasons"])
    assert data["gate"]["passed"] is False
    assert data["uploaded"] is False
    assert _manifest(work)["latest"] == previous


def test_finetune_without_fallback_reports_the_gate(first_run: Path, tmp_path: Path) -> None:
    work, repo = _clone(first_run, tmp_path)
    _add_examples(work, repo)
    report = tmp_path / "report.json"
    code = main(["ci", "-C", str(work), *TINY, "--no-fallback-full", "--min-intent-f1", "1.01",
                 "--report-json", str(report)], environ={})
    assert code == 2  # a floor above 1 is a usage error, caught before the gate is trusted
    code = main(["ci", "-C", str(work), *TINY, "--no-fallback-full", "--max-drop", "1",
                 "--report-json", str(report)], environ={})
    data = _report(report)
    assert code == 0 and data["decision"] == "finetune" and data["fell_back_to_full"] is False
    assert data["uploaded"] is True


@pytest.fixture
def store_server() -> Iterator[FakeStoreServer]:
    server = FakeStoreServer().start()
    server.token = STORE_TOKEN
    try:
        yield server
    finally:
        server.stop()


def test_http_store_pr_comment_and_failed_upload(
    first_run: Path, tmp_path: Path, store_server: FakeStoreServer, fake_github: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work, repo = _clone(first_run, tmp_path)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}, "number": 7}))
    environ = {
        "DELTATRAIN_STORE_TOKEN": STORE_TOKEN,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": fake_github.base_url,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
    }
    store = store_server.url("/store/")
    args = ["ci", "-C", str(work), *TINY, "--store", store, "--pr-comment"]

    assert main(args, environ=environ) == 0  # empty HTTP store: full, uploaded
    first = json.loads(store_server.files["/store/manifest.json"])["latest"]
    assert main(args, environ=environ) == 0  # unchanged: skip
    assert len(fake_github.marked(7)) == 1, "one PR comment, kept up to date"
    assert "`skip`" in fake_github.marked(7)[0]["body"]

    _add_examples(work, repo)
    store_server.add_fault("PUT", r"model\.tar\.gz$", status=500)
    code = main(args, environ=environ)
    captured = capsys.readouterr()
    assert code == 4
    assert STORE_TOKEN not in captured.out + captured.err
    assert json.loads(store_server.files["/store/manifest.json"])["latest"] == first

    environ_without_token = {k: v for k, v in environ.items() if k != "DELTATRAIN_STORE_TOKEN"}
    assert main(args, environ=environ_without_token) == 4
    assert "DELTATRAIN_STORE_TOKEN" in capsys.readouterr().err
