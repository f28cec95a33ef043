"""``deltatrain store ...`` on a real ci-built store in the GitHub Releases fake: list, show,
pull, rollback (the next ci compares against the rolled-back model and says so), gc."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.cli import main
from tests.fake_forges import GITHUB_TOKEN, FakeGitHubReleases
from tests.helpers import copy_into_git_repo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "assistant"
TINY = ["--epochs", "2"]
STORE = "github://octo/assistant"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def forge() -> Iterator[FakeGitHubReleases]:
    fake = FakeGitHubReleases().start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GITHUB_API_URL", fake.api_url)
        patch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
        yield fake
    fake.stop()


@pytest.fixture(scope="module")
def two_models(forge: FakeGitHubReleases, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example assistant after two ci runs (two commits) publishing to the GitHub store."""
    import git

    work = tmp_path_factory.mktemp("store-commands") / "assistant"
    copy_into_git_repo(EXAMPLE, work)
    assert main(["ci", "-C", str(work), "--store", STORE, *TINY], environ={}) == 0
    nlu = work / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace("    - cya\n", "    - cya\n    - farewell\n"))
    repo = git.Repo(work)
    repo.git.add(A=True)
    repo.index.commit("one more goodbye")
    assert main(["ci", "-C", str(work), "--store", STORE, *TINY], environ={}) == 0
    return work


def store(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["store", "--store", STORE, *args], environ={})
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_list_show_pull_rollback_and_the_next_ci_compares_against_it(
    two_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, listing = store("list", capsys=capsys)
    assert code == 0
    rows = [line for line in listing.splitlines()
            if line[:2] in ("* ", "  ") and "name" not in line and "= latest" not in line]
    assert len(rows) == 2 and rows[0].startswith("* ")  # newest first, and latest
    newest, older = rows[0].split()[1], rows[1].split()[0]
    assert "passed" in rows[0] and ("KiB" in rows[0] or "MiB" in rows[0])

    code, shown = store("show", older, capsys=capsys)
    details = json.loads(shown)
    assert code == 0 and details["name"] == older and details["metadata"]["git"]["commit"]

    code, pulled = store("pull", "--out", str(tmp_path / "pulled"), capsys=capsys)
    assert code == 0 and f"{newest}.tar.gz" in pulled
    with tarfile.open(tmp_path / "pulled" / f"{newest}.tar.gz") as archive:
        assert archive.getnames()

    code, rolled = store("rollback", capsys=capsys)
    assert code == 0 and f"{newest} -> {older}" in rolled
    code, listing = store("list", capsys=capsys)
    assert any(line.startswith(f"* {older}") for line in listing.splitlines())

    report = tmp_path / "report.json"
    assert main(["ci", "-C", str(two_models), "--store", STORE, "--mode", "skip-check",
                 "--report-json", str(report)], environ={}) == 0
    data = json.loads(report.read_text())
    assert data["previous_model"] == older
    assert any(f"rolled back to {older}" in note and newest in note for note in data["notes"])


def test_rollback_to_an_unknown_model_and_gc_on_a_clean_store(
    two_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = store("rollback", "no-such-model", capsys=capsys)
    assert code == 4 and "'no-such-model' is not listed" in out

    code, out = store("gc", capsys=capsys)
    assert code == 0 and "nothing to remove" in out


def test_a_fork_pull_request_trains_and_gates_but_does_not_fail_for_the_refused_upload(
    forge: FakeGitHubReleases, two_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forge.read_only = True
    monkeypatch.setenv("GITHUB_EVENT_NAME", "pull_request")
    report = tmp_path / "report.json"
    try:
        code = main(["ci", "-C", str(two_models), "--store", STORE, "--mode", "full", *TINY, "--max-drop", "1",
                     "--report-json", str(report)], environ={})
    finally:
        forge.read_only = False

    data = json.loads(report.read_text())
    assert code == 0 and data["uploaded"] is False
    assert any("not uploaded" in note and "read-only" in note for note in data["notes"])


@pytest.mark.parametrize("where", ["before", "after"], ids=["store-before-action", "store-after-action"])
def test_store_url_may_stand_before_or_after_the_action(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "empty-store"
    options = ["--store", str(folder)]
    argv = ["store", *options, "list"] if where == "before" else ["store", "list", *options]
    assert main(argv, environ={}) == 0
    assert f"no models in {folder.as_uri()}" in capsys.readouterr().out


def test_rollback_on_an_empty_store_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["store", "rollback", "--store", str(tmp_path / "store")], environ={})
    err = capsys.readouterr().err
    assert code == 4
    assert "has no models to roll back to" in err and "fix: check the --store URL" in err


def test_an_error_without_a_hint_still_logs_its_kinds_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "99999", "--model", "/nonexistent"], environ={}) == 2
    err = capsys.readouterr().err
    assert "error: --port must be 0-65535, received 99999" in err
    assert "fix: correct the flag or action input named above" in err
