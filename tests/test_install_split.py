"""The core install (`pip install deltatrain`) and its extras: what each holds, what the core can do,
and the message when an extra is missing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.extras import EXTRA_MODULES, Extra, render_install_command
from tests.helpers import write_project
from tests.test_action_runtime import core_venv  # noqa: F401 - a fixture, used by name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
EXAMPLE = ROOT / "examples" / "assistant"


def read_lock(name: str) -> dict[str, str]:
    """Pins of a lock file: normalised name -> version."""
    pins = {}
    for line in (LOCKS / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            package, version = line.split(" ")[0].split("==")
            pins[re.sub(r"[-_.]+", "-", package).lower()] = version
    return pins


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_core_dependencies_have_no_training_packages() -> None:
    deps = " ".join(pyproject()["project"]["dependencies"]).lower()
    for heavy in ("tensorflow", "numpy", "matplotlib", "boto3"):
        assert heavy not in deps
    assert not {"tensorflow-cpu", "numpy", "matplotlib"} & set(read_lock("core.lock"))


def test_extras_in_pyproject_are_the_extras_deltatrain_names() -> None:
    extras = set(pyproject()["project"]["optional-dependencies"]) - {"dev", "bench"}
    assert extras == {e.value for e in Extra}
    assert set(EXTRA_MODULES) == set(Extra)


def test_locks_agree_and_the_image_lock_holds_core_and_training() -> None:
    core, train, runtime, dev = (read_lock(n) for n in ("core.lock", "train.lock", "runtime.lock", "dev.lock"))
    assert not set(core) & set(train), "train.lock completes core.lock; a package in both could disagree"
    for name, version in {**core, **train}.items():
        assert runtime.get(name) == version, f"runtime.lock (the image) pins {name} differently"
        if name not in ("setuptools", "wheel"):  # build tools, not in the dev environment's lock
            assert dev.get(name) == version, f"dev.lock pins {name} differently"


def _run_core(venv: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pipeline", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_core_install_validates_and_fingerprints_a_project_with_pretrained_features(
    core_venv: Path, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    import shutil

    project = tmp_path / "assistant"
    shutil.copytree(EXAMPLE, project)  # its config has LanguageModelFeaturizer
    validated = _run_core(core_venv, project, "data", "validate")
    assert validated.returncode == 0, validated.stderr
    fingerprinted = _run_core(core_venv, project, "data", "fingerprint", "--tests", "tests")
    assert fingerprinted.returncode == 0, fingerprinted.stderr
    assert set(json.loads(fingerprinted.stdout)["sections"]) >= {"nlu_examples", "test_data"}


@pytest.mark.parametrize(("command", "extra"), [
    (["train"], Extra.TRAIN), (["test"], Extra.TRAIN), (["parse", "hello"], Extra.TRAIN), (["serve"], Extra.SERVE),
])
def test_commands_without_their_extra_name_the_install_command(
    core_venv: Path, tmp_path: Path, command: list[str], extra: Extra  # noqa: F811
) -> None:
    import shutil

    project = tmp_path / "assistant"
    shutil.copytree(EXAMPLE, project)
    completed = _run_core(core_venv, project, *command)
    assert completed.returncode == 2, completed.stderr
    assert render_install_command(extra) in completed.stderr
    assert "Traceback" not in completed.stderr


def test_fingerprint_with_tests_is_the_one_ci_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.data.loader import DirectorySource, load_project
    from pipeline.fingerprint import compute_fingerprint

    project = write_project(tmp_path, {
        "domain.yml": "version: '3.1'\nintents: [greet, bye]\n",
        "config.yml": "language: en\npipeline:\n  - name: WhitespaceTokenizer\n  - name: CountVectorsFeaturizer\n"
                      "  - name: DIETClassifier\n",
        "data/nlu.yml": "nlu:\n- intent: greet\n  examples: |\n    - hi\n- intent: bye\n  examples: |\n    - ciao\n",
        "tests/nlu_test.yml": "nlu:\n- intent: greet\n  examples: |\n    - hello there\n",
    })
    monkeypatch.chdir(project)
    stored = compute_fingerprint(load_project(DirectorySource(project))[0])["sections"]  # what `ci` computes

    assert main(["data", "fingerprint", "--tests", "tests"], environ={}) == 0
    with_tests = json.loads(capsys.readouterr().out)["sections"]
    assert main(["data", "fingerprint"], environ={}) == 0
    without = json.loads(capsys.readouterr().out)["sections"]

    assert with_tests == stored
    assert without["test_data"] != stored["test_data"]
