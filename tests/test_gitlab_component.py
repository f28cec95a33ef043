"""The GitLab CI/CD component (templates/deltatrain.yml): its inputs mirror the Action's and the CLI's,
it renders to a valid job, and the job's variables become the `deltatrain ci` command line."""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline import RESULTS_DIR, action
from pipeline.cli import build_parser
from pipeline.evaluation import NLU_JUNIT_FILE
from pipeline.testing import STORIES_JUNIT

ROOT = Path(__file__).resolve().parent.parent
COMPONENT = ROOT / "templates" / "deltatrain.yml"
ACTION_YML = ROOT / "action.yml"
INTERPOLATION = re.compile(r"\$\[\[\s*inputs\.([\w-]+)\s*\]\]")

#: Action inputs with no GitLab counterpart: GitHub's token and PR comment; secrets are CI/CD variables.
GITHUB_ONLY = {"github-token", "pr-comment", "store-token"}
#: Inputs of the component only: where and how the job runs.
GITLAB_ONLY = {"job-name", "stage", "image", "dotenv"}
#: Defaults that differ on purpose: no silent store (required), artifact folders named from the root.
PACKAGE_STORE = "gitlab://$CI_SERVER_HOST/$CI_PROJECT_ID/deltatrain-models"
GITLAB_DEFAULTS = {"store": PACKAGE_STORE, "out": "models", "results-dir": RESULTS_DIR}


def split_component() -> tuple[dict[str, Any], str]:
    """The header (spec) as data and the job document as text."""
    text = COMPONENT.read_text(encoding="utf-8")
    head, job = text.split("\n---\n", 1)
    return yaml.safe_load(head), job


def render(inputs: dict[str, str]) -> dict[str, Any]:
    """The job document with ``$[[ inputs.x ]]`` replaced as GitLab does: in the parsed YAML's keys and
    string values (so a value cannot add YAML of its own), by the given value, else the default."""
    spec, job = split_component()
    declared = spec["spec"]["inputs"]
    missing = [name for name, s in declared.items() if "default" not in s and name not in inputs]
    assert not missing, f"GitLab refuses the include without required input(s) {missing}"

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in declared, f"$[[ inputs.{name} ]] is not declared"
        return inputs.get(name, str(declared[name].get("default", "")))

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {walk(k): walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return INTERPOLATION.sub(value, node) if isinstance(node, str) else node

    return walk(yaml.safe_load(job))


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.gitlab-ci",
         "--data-transform", "gitlab-ci", str(path)],
        capture_output=True, text=True, timeout=120,
    )


def ci_flags() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {flag for a in sub.choices["ci"]._actions for flag in a.option_strings}


# --- one declaration ------------------------------------------------------------------------


def test_inputs_mirror_the_action_with_the_same_defaults() -> None:
    action_inputs = {n: s for n, s in yaml.safe_load(ACTION_YML.read_text())["inputs"].items()
                     if n not in action.DEPRECATED_INPUTS}
    component_inputs = split_component()[0]["spec"]["inputs"]
    assert set(component_inputs) == (set(action_inputs) - GITHUB_ONLY) | GITLAB_ONLY
    for name in set(action_inputs) - GITHUB_ONLY:
        expected = GITLAB_DEFAULTS.get(name, action_inputs[name].get("default")) if name in GITLAB_DEFAULTS \
            else action_inputs[name].get("default")
        assert component_inputs[name].get("default") == expected, name
        assert component_inputs[name].get("description"), name
    assert component_inputs["store"]["default"] == PACKAGE_STORE  # persists between pipelines
    assert component_inputs["mode"]["options"] == ["auto", "full", "finetune", "skip-check"]


def test_every_action_input_is_a_cli_flag_and_the_job_passes_each_one() -> None:
    flags = ci_flags()
    for name in action.ARGV_INPUTS:
        assert f"--{name}" in flags, name
    _, job = split_component()
    variables = yaml.safe_load(job)["$[[ inputs.job-name ]]"]["variables"]
    passed = {k: v for k, v in variables.items() if k.startswith("INPUT_")}
    mirrored = set(action.ARGV_INPUTS) - GITHUB_ONLY
    assert passed == {f"INPUT_{n.upper().replace('-', '_')}": f"$[[ inputs.{n} ]]" for n in mirrored}


# --- rendered and validated -------------------------------------------------------------------


def test_component_documents_and_the_rendered_job_match_the_gitlab_schema(tmp_path: Path) -> None:
    text = COMPONENT.read_text(encoding="utf-8")
    head, job = text.split("\n---\n", 1)
    rendered = render({"store": "s3://bucket/assistant", "working-directory": "bot", "upload": "false"})
    files = {"head.yml": head + "\n", "job.yml": job, "rendered.yml": yaml.safe_dump(rendered)}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
        result = check_jsonschema(tmp_path / name)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_the_schema_check_is_not_vacuous(tmp_path: Path) -> None:
    spec, _ = split_component()
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"spec": {**spec["spec"], "bogus": True}}))
    assert check_jsonschema(bad).returncode != 0
    job = render({"store": "s3://b/p"})
    job["deltatrain"]["artifacts"]["reports"]["junit"] = 42
    bad.write_text(yaml.safe_dump(job))
    assert check_jsonschema(bad).returncode != 0


def test_rendered_variables_become_the_ci_command_line() -> None:
    job = render({"store": "s3://bucket/assistant", "working-directory": "bot", "upload": "false",
                  "min-intent-f1": "0.8", "data": "data/nlu.yml\ndata/stories.yml"})["deltatrain"]
    env = {k: str(v) for k, v in job["variables"].items()}
    assert job["script"] == ["python -m pipeline.action"]
    argv = action.build_ci_argv(action.read_inputs(env, stream=io.StringIO()))
    args = build_parser().parse_args(argv)
    assert args.store == "s3://bucket/assistant" and args.working_directory == "bot"
    assert args.upload is False and args.min_intent_f1 == 0.8
    assert args.data == ["data/nlu.yml", "data/stories.yml"]
    assert args.out == "models" and args.results_dir == RESULTS_DIR
    assert env[action.DOTENV_ENV] == "deltatrain.env"


def test_reports_name_the_files_deltatrain_writes() -> None:
    job = render({"store": "s3://b/p"})["deltatrain"]
    reports = job["artifacts"]["reports"]
    assert reports["junit"] == [f"{RESULTS_DIR}/{NLU_JUNIT_FILE}", f"{RESULTS_DIR}/{STORIES_JUNIT}"]
    assert reports["dotenv"] == "deltatrain.env" == job["variables"][action.DOTENV_ENV]
    assert "models/" in job["artifacts"]["paths"]


def test_an_include_without_a_store_keeps_models_in_the_package_registry() -> None:
    (job,) = render({}).values()
    assert job["variables"]["INPUT_STORE"] == PACKAGE_STORE
