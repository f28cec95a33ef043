"""Workflow hygiene: zizmor (offline) finds nothing, actions are pinned, tokens are scoped."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml")) + sorted((ROOT / "docs" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
#: `uses:` lines that may stay unpinned: the action under test and the docs' placeholder for it.
UNPINNED_ALLOWED = ("./", "deltatrain/deltatrain@v1")


def _zizmor() -> str | None:
    """The zizmor next to this Python (the project's venv), else the one on PATH."""
    return shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.skipif(_zizmor() is None, reason="zizmor is not installed (pip install -r requirements/dev.lock)")
def test_zizmor_offline_finds_nothing() -> None:
    zizmor = _zizmor()
    assert zizmor is not None
    # docs/workflows is not a .github/workflows folder, so its files are named one by one.
    docs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "workflows").glob("*.yml"))
    inputs = [".github/workflows", *docs, "action.yml"]
    result = subprocess.run(
        [zizmor, "--offline", "--no-progress", *inputs], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(ROOT))) for p in WORKFLOWS])
def test_third_party_actions_are_pinned_by_sha_with_the_version_in_a_comment(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for step in _steps(_load(path)):
        uses = step.get("uses")
        if uses is None or uses in UNPINNED_ALLOWED:
            continue
        assert PINNED.match(uses), f"{path.name}: {uses} is not pinned to a commit SHA"
        assert re.search(rf"{re.escape(uses)}\s+# v\d+\.\d+\.\d+", text), f"{path.name}: {uses} lacks '# vX.Y.Z'"


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(ROOT))) for p in WORKFLOWS])
def test_checkouts_do_not_persist_credentials_and_permissions_are_per_job(path: Path) -> None:
    workflow = _load(path)
    assert workflow.get("permissions") == {}, f"{path.name}: top-level permissions must be {{}}"
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict) and job["permissions"], f"{path.name}: job {name}"
        assert "write-all" not in str(job["permissions"])
    checkouts = [s for s in _steps(workflow) if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts
    for step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: {step}"


def test_dockerfile_base_image_is_pinned_and_trusts_only_the_workspace() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert froms and all(re.search(r"@sha256:[0-9a-f]{64}\b", line) for line in froms), froms
    assert "safe.directory '*'" not in text and "safe.directory *" not in text
    assert "safe.directory /github/workspace" in text
    gitlab = (ROOT / "templates" / "deltatrain.yml").read_text(encoding="utf-8")
    assert 'safe.directory "$CI_PROJECT_DIR"' in gitlab
