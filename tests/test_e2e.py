"""End to end: the real CLI in a real git repository with the local store.

full -> skip -> finetune (examples added) -> finetune (intent added), reading
$GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY as a workflow would. Tiny epochs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import git
import pytest

from pipeline.cli import main
from tests.helpers import copy_into_git_repo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "assistant"
TINY = ["--epochs", "2", "--max-drop", "1"]


def _read_outputs(path: Path) -> dict[str, str]:
    outputs: dict[str, str] = {}
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if "<<" in line and "=" not in line.split("<<")[0]:
            name, delimiter = line.split("<<", 1)
            value = []
            index += 1
            while lines[index] != delimiter:
                value.append(lines[index])
                index += 1
            outputs[name] = "\n".join(value)
        elif "=" in line:
            name, value_text = line.split("=", 1)
            outputs[name] = value_text
        index += 1
    return outputs


@pytest.fixture()
def repo(tmp_path: Path) -> git.Repo:
    return copy_into_git_repo(EXAMPLE, tmp_path / "assistant")


def _run(repo_dir: Path, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    output = tmp_path / f"output-{len(list(tmp_path.glob('output-*')))}"
    summary = tmp_path / "summary.md"
    output.write_text("")
    summary.write_text("")
    environ = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), **(env or {})}
    code = main(["ci", "--working-directory", str(repo_dir), *TINY, *extra], environ=environ)
    return code, _read_outputs(output), summary.read_text()


@pytest.mark.slow
def test_full_then_skip_then_finetune_then_full(repo: git.Repo, tmp_path: Path) -> None:
    work = Path(repo.working_tree_dir)

    code, outputs, summary = _run(work, tmp_path)
    assert code == 0, summary
    assert outputs["decision"] == "full"
    assert "no previous model" in outputs["reason"]
    assert outputs["model-name"] and Path(outputs["model-path"]).is_file()
    intent_report = json.loads((work / ".deltatrain" / "results" / "intent_report.json").read_text())
    assert outputs["intent-f1"] == f"{intent_report['weighted avg']['f1-score']:.4f}"
    assert outputs["dry-run-code"] == "3"
    assert "deltatrain" in summary and "`full`" in summary
    first_model = outputs["model-name"]
    manifest = json.loads((work / ".deltatrain" / "store" / "manifest.json").read_text())
    assert manifest["latest"] == first_model

    code, outputs, summary = _run(work, tmp_path)
    assert code == 0
    assert outputs["decision"] == "skip"
    assert outputs["model-name"] == first_model
    assert outputs["previous-model"] == first_model
    assert outputs["dry-run-code"] == "0"

    nlu = work / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace(
        "    - forecast for [tomorrow](date)\n",
        "    - forecast for [tomorrow](date)\n    - any rain in [Paris](city)\n    - how warm is [Oslo](city)\n",
    ))
    repo.git.add(A=True)
    repo.index.commit("two more weather examples")
    code, outputs, summary = _run(work, tmp_path)
    assert code == 0, summary
    assert outputs["decision"] == "finetune", outputs["reason"]
    assert "2 NLU example(s) added" in outputs["reason"]
    assert outputs["previous-model"] == first_model
    with __import__("tarfile").open(outputs["model-path"]) as tar:
        metadata = json.load(tar.extractfile("metadata.json"))
    assert metadata["finetuned_from"]["name"] == first_model
    assert metadata["parts"]["nlu"]["action"] == "finetune"
    assert metadata["parts"]["core"]["action"] == "keep"
    assert "ask_weather" in summary

    nlu.write_text(nlu.read_text() + "\n- intent: ask_time\n  examples: |\n    - what time is it\n    - tell me the time\n")
    domain = work / "domain.yml"
    domain.write_text(domain.read_text().replace("  - inform\n", "  - inform\n  - ask_time\n"))
    repo.git.add(A=True)
    repo.index.commit("new intent")
    code, outputs, _ = _run(work, tmp_path)
    assert code == 0
    assert outputs["decision"] == "finetune", outputs["reason"]  # the label space grows (issue 17)
    assert "intent `ask_time` added in data/nlu.yml" in outputs["reason"]


def test_skip_does_not_import_tensorflow(repo: git.Repo, tmp_path: Path) -> None:
    """A skip decision must stay fast: no TensorFlow import (checked in a fresh interpreter)."""
    work = Path(repo.working_tree_dir)
    store = work / ".deltatrain" / "store"
    # Seed the store with a manifest whose fingerprint equals the current data, without training.
    script = f"""
import json, sys, tarfile, io, pathlib
from pipeline.data.loader import DirectorySource, load_project
from pipeline.fingerprint import compute_fingerprint
from pipeline.stores import open_store
work = pathlib.Path({str(work)!r})
project, _ = load_project(DirectorySource(work))
fp = compute_fingerprint(project).to_json()
archive = work.parent / "seed.tar.gz"
with tarfile.open(archive, "w:gz") as tar:
    for name, data in (("metadata.json", b"{{}}"), ("fingerprint.json", json.dumps(fp).encode())):
        info = tarfile.TarInfo(name); info.size = len(data); tar.addfile(info, io.BytesIO(data))
open_store(None, base_dir=work).publish(archive, name="seed", fingerprint=fp, metadata={{"name": "seed"}}, metrics={{"intent_f1": 0.9}})
from pipeline.cli import main
from tests.helpers import copy_into_git_repo
code = main(["ci", "--working-directory", str(work)], environ={{}})
assert code == 0, code
assert "tensorflow" not in sys.modules, "tensorflow imported on skip"
print("ok")
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert completed.returncode == 0, completed.stderr
    assert "deltatrain: decision: skip — " in completed.stderr
    assert "`skip`" in completed.stdout
    assert store.joinpath("manifest.json").is_file()


def test_data_error_is_reported_with_file_and_line_and_annotation(repo: git.Repo, tmp_path: Path) -> None:
    work = Path(repo.working_tree_dir)
    nlu = work / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace("    - hey\n", '    - hey [there]{"entity": city}\n', 1))
    repo.git.add(A=True)
    repo.index.commit("broken annotation")
    import io
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["ci", "--working-directory", str(work)], environ={"GITHUB_ACTIONS": "true"})
    assert code == 1
    assert "data/nlu.yml:5" in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert "::error file=data/nlu.yml,line=5" in out.getvalue()


def test_work_tree_changes_are_not_trained(repo: git.Repo, tmp_path: Path) -> None:
    """Uncommitted edits are ignored (and reported): CI trains what was committed."""
    work = Path(repo.working_tree_dir)
    nlu = work / "data" / "nlu.yml"
    nlu.write_text("this: is: not yaml\n")
    code, outputs, summary = _run(work, tmp_path, "--mode", "skip-check")
    assert code == 0
    assert outputs["decision"] == "full"
    assert "work tree differs" in summary and "data/nlu.yml" in summary


@pytest.mark.parametrize("import_tensorflow", [True, False], ids=["after-training", "without-tensorflow"])
def test_command_exit_keeps_the_code_and_flushes_output(tmp_path: Path, import_tensorflow: bool) -> None:
    log = tmp_path / "run.log"
    script = (
        "import logging, sys\n"
        + ("from pipeline.training.runtime import configure_tensorflow; configure_tensorflow()\n" if import_tensorflow else "")
        + f"logging.basicConfig(filename={str(log)!r}, level=logging.INFO)\n"
        "logging.info('logged before exit')\n"
        "sys.stdout.write('no newline at the end')\n"
        "sys.stderr.write('to stderr')\n"
        "from pipeline.cli import exit_process\n"
        "exit_process(3)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert completed.returncode == 3
    assert completed.stdout == "no newline at the end"
    assert completed.stderr.endswith("to stderr")
    assert "logged before exit" in log.read_text()
