"""The composite Action as GitHub runs it, and what later steps can use of its results.

The steps of action.yml are read from the file and run with bash, with the
environment GitHub gives them (``INPUT_*`` from the step's ``env:``,
``GITHUB_OUTPUT``, ``GITHUB_STEP_SUMMARY``, ``GITHUB_WORKSPACE``) in a real git
checkout. The decide phase runs in a new virtual env holding exactly the
packages of requirements/core.lock (linked from this environment, since tests
do not download), as after the core install on a fresh runner: no NumPy, no
TensorFlow.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import git
import pytest
import yaml

from pipeline import action
from pipeline.cli import Console, main
from pipeline.report import OUTPUT_NAMES
from pipeline.errors import DataError, Location, Problem
from tests.helpers import copy_into_git_repo

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "assistant"
EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
CORE_LOCK = ROOT / "requirements" / "core.lock"


@pytest.fixture(scope="session")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the packages of requirements/core.lock only (what the install step gives)."""
    from importlib.metadata import distribution

    venv = tmp_path_factory.mktemp("core-venv")
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for line in CORE_LOCK.read_text().splitlines():
        name = line.split("#")[0].split("==")[0].strip()
        if not name:
            continue
        dist = distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return venv


def load_action() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))


def step(step_id: str) -> dict[str, Any]:
    """The step of action.yml with this id."""
    steps = [s for s in load_action()["runs"]["steps"] if s.get("id") == step_id]
    assert len(steps) == 1, step_id
    return steps[0]


def read_outputs(path: Path) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` (heredoc form) as a dict."""
    outputs: dict[str, str] = {}
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        name, delimiter = lines[index].split("<<", 1)
        end = lines.index(delimiter, index + 1)
        outputs[name] = "\n".join(lines[index + 1:end])
        index = end + 1
    return outputs


class Runner:
    """Runs steps of action.yml the way the runner does, in one job."""

    def __init__(self, workspace: Path, tmp: Path, inputs: dict[str, str], core_venv: Path) -> None:
        self.workspace = workspace
        self.tmp = tmp
        self.inputs = inputs
        self.core_venv = core_venv
        self.summary = tmp / "summary.md"
        self.summary.write_text("")

    def expression(self, text: str) -> str:
        """``text`` with the ``${{ }}`` expressions a deltatrain step uses replaced."""
        specs = load_action()["inputs"]

        def value(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("inputs."):
                name = expr.removeprefix("inputs.")
                default = str(specs[name].get("default", ""))
                return self.inputs.get(name, "" if "${{" in default else default)
            known = {"github.action_path": str(ROOT), "runner.temp": str(self.tmp / "runner-temp")}
            assert expr in known, f"unexpected expression in a deltatrain step: {expr}"
            return known[expr]

        return EXPRESSION.sub(value, text)

    def run(self, step_id: str, *, core_only: bool) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
        spec = step(step_id)
        output = self.tmp / f"output-{step_id}-{len(list(self.tmp.glob('output-*')))}"
        output.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "DELTATRAIN_"))}
        env.update({name: self.expression(str(value)) for name, value in spec["env"].items()})
        env.update({
            # the venv of the install step: core only to decide; to train, this test environment
            # (which the cached training packages complete on a runner)
            "VENV": str(self.core_venv) if core_only else sys.prefix,
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_EVENT_NAME": "push",
        })
        completed = subprocess.run(["bash", "-c", spec["run"]], cwd=self.workspace, env=env,
                                   capture_output=True, text=True, timeout=600)
        return completed, read_outputs(output)


def action_outputs(decide: dict[str, str], train: dict[str, str]) -> dict[str, str]:
    """The composite action's outputs from its steps' outputs, as action.yml's `value:` says."""
    result = {}
    for name, spec in load_action()["outputs"].items():
        match = re.fullmatch(r"\$\{\{ steps\.train\.outputs\.([\w-]+) \|\| steps\.decide\.outputs\.([\w-]+) \}\}",
                             spec["value"])
        assert match and match.group(1) == match.group(2) == name, spec["value"]
        result[name] = train.get(name) or decide.get(name, "")
    return result


def seed_store(project: Path, store: Path) -> None:
    """Publish a placeholder model whose fingerprint is the project's committed data (no training)."""
    from pipeline.data.loader import DirectorySource, load_project
    from pipeline.fingerprint import compute_fingerprint
    from pipeline.stores import open_store

    project_data, _ = load_project(DirectorySource(project))
    fingerprint = compute_fingerprint(project_data).to_json()
    archive = store.parent / "seed.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("metadata.json", b"{}"), ("fingerprint.json", json.dumps(fingerprint).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    open_store(str(store), base_dir=project).publish(
        archive, name="seed", fingerprint=dict(fingerprint), metadata={"name": "seed"}, metrics={"intent_f1": 0.9}
    )


# --- action.yml shape ------------------------------------------------------------------


def test_action_is_composite_and_deltatrain_steps_get_every_input() -> None:
    spec = load_action()
    assert spec["runs"]["using"] == "composite"
    names = list(spec["inputs"])
    for step_id, phase in (("decide", action.Phase.DECIDE), ("train", action.Phase.TRAIN)):
        env = step(step_id)["env"]
        assert env[action.PHASE_ENV] == phase.value
        passed = {key: value for key, value in env.items() if key.startswith("INPUT_")}
        assert passed == {f"INPUT_{n.upper().replace('-', '_')}": f"${{{{ inputs.{n} }}}}" for n in names}
        assert step(step_id)["run"].strip() == '"$VENV/bin/python" -m pipeline.action'
    for s in spec["runs"]["steps"]:
        if "run" in s:  # inputs reach shell only through env: no expression inside a script
            assert "${{" not in s["run"], s


def test_training_steps_run_only_when_the_decision_trains() -> None:
    steps = load_action()["runs"]["steps"]
    after = steps[[s.get("id") for s in steps].index("decide") + 1:]
    assert after
    for s in after:
        assert "steps.decide.outputs.needs-training == 'true'" in s["if"], s.get("name")


def test_core_venv_has_no_numpy_or_tensorflow(core_venv: Path) -> None:
    probe = "import importlib.util as u; print([m for m in ('numpy', 'tensorflow', 'yaml', 'git') if u.find_spec(m)])"
    completed = subprocess.run([str(core_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True,
                               env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=60)
    assert completed.stdout.strip() == "['yaml', 'git']", completed.stderr


def test_phase_argv() -> None:
    assert action.build_phase_argv(["ci"], "decide") == ["ci", "--decide-only"]
    assert action.build_phase_argv(["ci"], "train") == ["ci"]
    assert action.build_phase_argv(["ci"], None) == ["ci"]
    with pytest.raises(action.UsageError, match="received 'bogus'"):
        action.build_phase_argv(["ci"], "bogus")


# --- the Action run as GitHub runs it --------------------------------------------------------


@pytest.fixture()
def checkout(tmp_path: Path) -> git.Repo:
    """A repository with the assistant in `bot/` (the Action gets `working-directory: bot`)."""
    root = tmp_path / "workspace"
    repo = copy_into_git_repo(EXAMPLE, root / "bot")
    return repo


def test_skip_decides_with_the_core_only_and_later_steps_get_the_outputs(
    checkout: git.Repo, tmp_path: Path, core_venv: Path
) -> None:
    project = Path(checkout.working_tree_dir)
    store = tmp_path / "store"
    seed_store(project, store)
    runner = Runner(project.parent, tmp_path, {"store": str(store), "working-directory": "bot"}, core_venv)

    completed, decided = runner.run("decide", core_only=True)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert decided["needs-training"] == "false"
    outputs = action_outputs(decided, {})
    assert outputs["decision"] == "skip" and outputs["model-name"] == "seed"
    assert outputs["dry-run-code"] == "0" and outputs["model-path"] == ""
    assert "`skip`" in runner.summary.read_text()


def test_data_errors_in_the_decide_phase_fail_it_with_paths_from_the_repository_root(
    checkout: git.Repo, tmp_path: Path, core_venv: Path
) -> None:
    project = Path(checkout.working_tree_dir)
    domain = project / "domain.yml"
    domain.write_text(domain.read_text().replace("  - greet\n", "", 1))
    checkout.git.add(A=True)
    checkout.index.commit("greet removed from the domain")
    runner = Runner(project.parent, tmp_path, {"store": str(tmp_path / "store"), "working-directory": "bot"}, core_venv)

    completed, decided = runner.run("decide", core_only=True)

    assert completed.returncode == 1
    assert decided["decision"] == "error"  # documented in action.yml
    annotations = [line for line in completed.stdout.splitlines() if line.startswith("::error file=")]
    assert annotations and all(line.startswith("::error file=bot/") for line in annotations), annotations
    assert "bot/data/nlu.yml" in runner.summary.read_text()


TINY_CONFIG = """\
recipe: default.v1
language: en
assistant_id: travel-helper
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: DIETClassifier
    epochs: 3
  - name: EntitySynonymMapper
policies:
  - name: MemoizationPolicy
  - name: RulePolicy
  - name: TEDPolicy
    max_history: 5
    epochs: 3
"""


@pytest.mark.slow
def test_full_then_finetune_through_both_phases(
    checkout: git.Repo, tmp_path: Path, core_venv: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = Path(checkout.working_tree_dir)
    (project / "config.yml").write_text(TINY_CONFIG)
    checkout.git.add(A=True)
    checkout.index.commit("tiny config")
    inputs = {"store": str(tmp_path / "store"), "working-directory": "bot", "max-drop": "1", "epoch-fraction": "1"}
    runner = Runner(project.parent, tmp_path, inputs, core_venv)
    old_umask = os.umask(0o022)
    try:
        completed, decided = runner.run("decide", core_only=True)
        assert completed.returncode == 0, completed.stderr
        assert decided == {"needs-training": "true"}
        completed, trained = runner.run("train", core_only=False)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert action_outputs(decided, trained)["decision"] == "full"

        nlu = project / "data" / "nlu.yml"
        nlu.write_text(nlu.read_text().replace("    - hello\n", "    - hello\n    - hiya\n    - hey there\n", 1))
        checkout.git.add(A=True)
        checkout.index.commit("two more greetings")
        completed, decided = runner.run("decide", core_only=True)
        assert decided == {"needs-training": "true"}, completed.stderr
        completed, trained = runner.run("train", core_only=False)
    finally:
        os.umask(old_umask)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    outputs = action_outputs(decided, trained)
    assert outputs["decision"] == "finetune", outputs["reason"]
    # model-path is relative to the workspace and the file is readable by other users (umask 022)
    assert outputs["model-path"].startswith("bot/models/") and outputs["model-path"].endswith(".tar.gz")
    archive = project.parent / outputs["model-path"]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o644
    # the log folds training and testing into groups; the reports land in deltatrain's folder
    lines = completed.stdout.splitlines()
    assert any(line.startswith("::group::deltatrain: training") for line in lines)
    assert "::group::deltatrain: testing" in lines and "::endgroup::" in lines
    results = project / ".deltatrain" / "results"
    assert (results / "nlu_junit.xml").is_file() and (results / "stories_junit.xml").is_file()

    # `parse` and `test` take the store and use its latest model (the finetuned one)
    monkeypatch.chdir(project)
    capsys.readouterr()
    assert main(["parse", "--model", inputs["store"], "hello"], environ={}) == 0
    captured = capsys.readouterr()
    assert f"using {outputs['model-name']}" in captured.err
    assert json.loads(captured.out.splitlines()[-1])["text"] == "hello"
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "mine.txt").write_text("kept")
    assert main(["test", "--model", inputs["store"], "--out", str(tmp_path / "reports")], environ={}) == 0
    assert (tmp_path / "reports" / "nlu_junit.xml").is_file()
    assert (tmp_path / "reports" / "mine.txt").read_text() == "kept"


# --- annotations, summary, files ---------------------------------------------------------------


def test_annotations_and_summary_carry_the_prefix_and_list_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "summary.md"
    console = Console({"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    console.path_prefix = "bot"
    problems = [Problem("error", f"intent `i{n}` is not in the domain", Location("data/nlu.yml", n + 1))
                for n in range(14)]

    console.error(DataError(problems))

    out = capsys.readouterr().out
    assert out.count("::error file=bot/data/nlu.yml,line=") == 14
    text = summary.read_text()
    assert "14 error(s), 0 warning(s)" in text
    for n in range(14):
        assert f"bot/data/nlu.yml:{n + 1}: error: intent" in text and f"i{n}" in text


def test_groups_are_workflow_commands_only_in_actions(capsys: pytest.CaptureFixture[str]) -> None:
    Console({"GITHUB_ACTIONS": "true"}).group("deltatrain: training\n::error::x")
    Console({"GITHUB_ACTIONS": "true"}).group(None)
    Console({}).group("deltatrain: testing")
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["::group::deltatrain: training%0A::error::x", "::endgroup::"]
    assert captured.err.strip() == "deltatrain: testing"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_archives_and_store_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    from pipeline.archive import pack_archive
    from pipeline.stores import open_store

    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "metadata.json").write_text("{}")
    old = os.umask(umask)
    try:
        archive = pack_archive(staging, tmp_path / "models" / "m.tar.gz")
        open_store(str(tmp_path / "store"), base_dir=tmp_path).publish(
            archive, name="m", fingerprint={}, metadata={}, metrics={}
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(archive.stat().st_mode) == mode
    stored = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert stored and {stat.S_IMODE(p.stat().st_mode) for p in stored} == {mode}


def test_ci_reports_never_delete_user_files(tmp_path: Path) -> None:
    from pipeline.testing import REPORT_FILES, remove_report_files

    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.md").write_text("mine")
    for name in REPORT_FILES:
        (results / name).write_text("old")
    remove_report_files(results)
    assert [p.name for p in results.iterdir()] == ["notes.md"]


def test_gitlab_job_without_a_store_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ci", "-C", str(tmp_path)], environ={"GITLAB_CI": "true", "CI": "true"})
    assert code == 2
    err = capsys.readouterr().err
    assert "no model store" in err and "thrown away" in err and "--store" in err


def test_dotenv_report_carries_the_outputs(checkout: git.Repo, tmp_path: Path) -> None:
    project = Path(checkout.working_tree_dir)
    store = tmp_path / "store"
    seed_store(project, store)
    dotenv = tmp_path / "deltatrain.env"
    code = main(["ci", "-C", str(project), "--store", str(store), "--dotenv", str(dotenv)],
                environ={"GITLAB_CI": "true", "CI": "true", "CI_PROJECT_DIR": str(project.parent)})
    assert code == 0
    values = dict(line.split("=", 1) for line in dotenv.read_text().splitlines())
    assert set(values) == {f"DELTATRAIN_{n.upper().replace('-', '_')}" for n in OUTPUT_NAMES}
    assert values["DELTATRAIN_DECISION"] == "skip" and values["DELTATRAIN_MODEL_NAME"] == "seed"
