"""The CI step against real servers: HTTP store with faults, PR comment, gate and fallback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable, Iterator

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


def _without_summaries(work: Path) -> None:
    """Make the store's manifest look like an older deltatrain wrote it: the side files decide."""
    manifest = _manifest(work)
    for entry in manifest["models"]:
        entry.pop("summary", None)
    (work / ".deltatrain" / "store" / "manifest.json").write_text(json.dumps(manifest))


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
    # the Rasa defaults deltatrain changed for this config (issue 18) reach the report, as trained
    from pipeline.archive import read_archive_json

    metadata, _ = read_archive_json(Path(data["model_path"]))
    trained = metadata["parts"]["nlu"]["summary"]["rasa_defaults_differing"]
    assert data["rasa_defaults_differing"] == trained
    assert any(line.startswith("DIETClassifier.") for line in trained)


def test_gate_failure_falls_back_to_full_then_keeps_the_good_model(first_run: Path, tmp_path: Path) -> None:
    work, repo = _clone(first_run, tmp_path)
    previous = _manifest(work)["latest"]
    manifest = _manifest(work)  # the latest's metrics, as the manifest carries them inline
    manifest["models"][0]["summary"]["metrics"] = {"intent_f1": 1.0, "entity_f1": 1.0, "story_accuracy": 1.0}
    (work / ".deltatrain" / "store" / "manifest.json").write_text(json.dumps(manifest))
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


def test_a_finetune_failing_the_gate_without_fallback_exits_3_and_says_what_to_do(
    first_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work, repo = _clone(first_run, tmp_path)
    previous = _manifest(work)["latest"]
    manifest = _manifest(work)  # the latest's metrics, as the manifest carries them inline
    manifest["models"][0]["summary"]["metrics"] = {"intent_f1": 1.01, "entity_f1": 1.0, "story_accuracy": 1.0}
    (work / ".deltatrain" / "store" / "manifest.json").write_text(json.dumps(manifest))
    _add_examples(work, repo)
    report, summary, output = tmp_path / "report.json", tmp_path / "summary.md", tmp_path / "output"
    environ = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}
    models = sorted((work / "models").iterdir())
    code = main(["ci", "-C", str(work), *TINY, "--no-fallback-full", "--min-intent-f1", "1.01",
                 "--report-json", str(report)], environ=environ)
    assert code == 2  # a floor above 1 is a usage error, caught before anything trains
    assert sorted((work / "models").iterdir()) == models
    capsys.readouterr()

    code = main(["ci", "-C", str(work), *TINY, "--no-fallback-full", "--max-drop", "0",
                 "--report-json", str(report)], environ=environ)

    data = _report(report)
    assert code == 3
    assert data["decision"] == "finetune" and data["fell_back_to_full"] is False
    assert data["gate"]["passed"] is False and data["uploaded"] is False
    assert any("below the previous model's 1.010" in c["reason"] for c in data["gate"]["checks"] if not c["passed"])
    assert _manifest(work)["latest"] == previous
    out = capsys.readouterr().out
    assert "::error title=deltatrain::quality gate failed, the model is not uploaded: intent F1" in out
    text = summary.read_text()
    assert "**Quality gate failed ❌**" in text and "relax the gate (--min-intent-f1" in text


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


# ------------------------------------------------------------ broken previous models


def _store(work: Path) -> Path:
    return work / ".deltatrain" / "store"


def _replace_archive(work: Path, data: bytes) -> str:
    """Put ``data`` in place of the latest archive and list it in the manifest (sha256 and size)."""
    manifest = _manifest(work)
    name = manifest["latest"]
    (_store(work) / "models" / name / "model.tar.gz").write_bytes(data)
    manifest["models"][0].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (_store(work) / "manifest.json").write_text(json.dumps(manifest))
    return name


def _latest_archive(work: Path) -> Path:
    return _store(work) / "models" / _manifest(work)["latest"] / "model.tar.gz"


def _with_symlink(archive: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(archive, "r:gz") as source, tarfile.open(fileobj=buffer, mode="w:gz") as out:
        for member in source.getmembers():
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
        link = tarfile.TarInfo("nlu/evil")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.addfile(link)
    return buffer.getvalue()


def _sha_mismatch(work: Path) -> str:
    archive = _latest_archive(work)
    archive.write_bytes(archive.read_bytes()[::-1])  # same size, other bytes; manifest untouched
    return "does not match the manifest"


def _missing_archive(work: Path) -> str:
    _latest_archive(work).unlink()
    return "the store has no such file"


def _truncated_archive(work: Path) -> str:
    data = _latest_archive(work).read_bytes()
    _replace_archive(work, data[: len(data) // 2])
    return "not a readable .tar.gz model archive"


def _unsafe_archive(work: Path) -> str:
    _replace_archive(work, _with_symlink(_latest_archive(work)))
    return "link or special file 'nlu/evil'"


@pytest.mark.parametrize(
    "damage",
    [_sha_mismatch, _missing_archive, _truncated_archive, _unsafe_archive],
    ids=["sha256-mismatch", "missing-archive", "truncated-archive", "unsafe-archive"],
)
def test_an_unusable_previous_archive_means_a_full_retrain_with_the_reason(
    first_run: Path, tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    work, repo = _clone(first_run, tmp_path)
    _add_examples(work, repo)  # a finetune, which needs the previous archive
    broken = _manifest(work)["latest"]
    detail = damage(work)
    report = tmp_path / "report.json"

    code = main(["ci", "-C", str(work), *TINY, "--report-json", str(report)], environ={})

    data = _report(report)
    assert code == 0
    assert data["decision"] == "full" and data["uploaded"] is True
    assert data["reasons"][0].startswith(f"previous model {broken} cannot be used (")
    assert detail in data["reasons"][0]
    assert data["broken_model"]["name"] == broken
    assert "deltatrain-ci-" not in data["broken_model"]["problem"]  # no temp path that is gone
    assert any(f"broken model in the store: {broken}" in n for n in data["notes"])
    assert _manifest(work)["latest"] == data["model_name"]


SIDE_FILE_DAMAGE = {
    "metadata-not-utf8": ("metadata.json", b'{"name": "caf\xe9"}', "metadata.json is not UTF-8 text"),
    "metadata-list": ("metadata.json", b"[]", "must hold a JSON object, received a list"),
    "finetunes-string": ("metadata.json", b'{"finetunes_in_a_row": "3"}', "finetunes_in_a_row must be a whole number"),
    "sections-list": ("fingerprint.json", b'{"sections": ["nlu"]}', "sections must be an object"),
    "metric-not-a-number": ("metrics.json", b'{"intent_f1": "0.9x"}', "intent_f1 must be a number or null"),
}


@pytest.mark.parametrize("case", sorted(SIDE_FILE_DAMAGE))
def test_a_malformed_side_file_in_the_store_is_reported_and_means_full(
    first_run: Path, tmp_path: Path, case: str
) -> None:
    work, _ = _clone(first_run, tmp_path)
    leaf, data, detail = SIDE_FILE_DAMAGE[case]
    broken = _manifest(work)["latest"]
    _without_summaries(work)
    (_store(work) / "models" / broken / leaf).write_bytes(data)
    report = tmp_path / "report.json"

    code = main(["ci", "-C", str(work), "--mode", "skip-check", "--report-json", str(report)], environ={})

    result = _report(report)
    assert code == 0
    assert result["decision"] == "full" and result["uploaded"] is False
    assert detail in result["reasons"][0] and broken in result["reasons"][0]
    assert result["broken_model"]["problem"].endswith(f"({_store(work).as_uri()}/models/{broken}/{leaf})")


def test_a_malformed_side_file_trains_in_full_and_publishes(first_run: Path, tmp_path: Path) -> None:
    work, _ = _clone(first_run, tmp_path)
    broken = _manifest(work)["latest"]
    _without_summaries(work)
    (_store(work) / "models" / broken / "metadata.json").write_text('{"finetunes_in_a_row": "3"}')
    report = tmp_path / "report.json"

    code = main(["ci", "-C", str(work), *TINY, "--report-json", str(report)], environ={})

    data = _report(report)
    assert code == 0 and data["decision"] == "full" and data["uploaded"] is True
    assert "finetunes_in_a_row must be a whole number >= 0, received '3'" in data["reasons"][0]
    assert [m["name"] for m in _manifest(work)["models"]] == [data["model_name"], broken]


def test_a_skip_onto_a_missing_archive_trains_in_full(first_run: Path, tmp_path: Path) -> None:
    work, _ = _clone(first_run, tmp_path)
    broken = _manifest(work)["latest"]
    _latest_archive(work).unlink()
    report = tmp_path / "report.json"

    code = main(["ci", "-C", str(work), *TINY, "--report-json", str(report)], environ={})

    data = _report(report)
    assert code == 0 and data["decision"] == "full"
    assert f"previous model {broken} cannot be used" in data["reasons"][0]


@pytest.mark.parametrize(
    "manifest, detail",
    [(b'{"format": 1, "latest": "x", "models": [', "not valid JSON"), (b'{"format": 1, "models": {}}', "'models' must be a list")],
    ids=["truncated-json", "models-not-a-list"],
)
def test_a_corrupt_manifest_fails_before_training_with_exit_4(
    first_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], manifest: bytes, detail: str
) -> None:
    work, repo = _clone(first_run, tmp_path)
    _add_examples(work, repo)
    (_store(work) / "manifest.json").write_bytes(manifest)
    shutil.rmtree(work / "models", ignore_errors=True)
    started = time.perf_counter()

    code = main(["ci", "-C", str(work), *TINY], environ={})

    err = capsys.readouterr().err
    assert code == 4
    assert time.perf_counter() - started < 5
    assert f"corrupt manifest.json: {detail}" in err and "fix: repair or delete manifest.json" in err
    assert not (work / "models").exists()  # nothing was trained
    assert "Traceback" not in err


# ------------------------------------------------------------ two CI runs at once


def test_two_ci_runs_publishing_at_once_both_land_in_the_store(first_run: Path, tmp_path: Path) -> None:
    store = tmp_path / "shared-store"
    shutil.copytree(_store(first_run), store)
    works = []
    for index, example in enumerate(("farewell", "see you soon")):
        work = tmp_path / f"run{index}"
        shutil.copytree(first_run, work)
        nlu = work / "data" / "nlu.yml"
        nlu.write_text(nlu.read_text().replace("    - cya\n", f"    - cya\n    - {example}\n"))
        repo = git.Repo(work)
        repo.git.add(A=True)
        repo.index.commit(f"add {example}")
        works.append(work)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name in ("GITHUB_ACTIONS", "GITHUB_EVENT_NAME", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "CI_PIPELINE_SOURCE"):
        env.pop(name, None)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", "ci", "-C", str(work), *TINY, "--store", str(store),
             "--report-json", str(tmp_path / f"report{index}.json")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for index, work in enumerate(works)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    names = {_report(tmp_path / f"report{i}.json")["model_name"] for i in range(2)}
    manifest = json.loads((store / "manifest.json").read_text())
    assert names <= {m["name"] for m in manifest["models"]}
    assert "publishing" not in manifest
    for entry in manifest["models"]:
        assert (store / entry["archive"]).is_file()
