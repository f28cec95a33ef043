"""The rasa.train-like API: dry-run codes per kind of change (no training needed)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from pipeline.data.loader import DirectorySource, load_project
from pipeline.fingerprint import compute_fingerprint
from pipeline.train import train, train_core

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "assistant"


def _seed_model(project_dir: Path, models: Path, name: str = "20260101-000000-000000") -> Path:
    """A model archive holding only the fingerprint of the current data (enough for a dry run)."""
    project, _ = load_project(DirectorySource(project_dir))
    fingerprint = compute_fingerprint(project).to_json()
    models.mkdir(parents=True, exist_ok=True)
    path = models / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, value in (("metadata.json", {"name": name, "trained_at": "2026-01-01T00:00:00+00:00"}),
                              ("fingerprint.json", fingerprint)):
            data = json.dumps(value).encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


EDITS = {
    "unchanged": [],
    "examples added": [("data/nlu.yml", "    - forecast for [tomorrow](date)\n",
                        "    - forecast for [tomorrow](date)\n    - rain in [Rome](city)?\n")],
    "story added": [("data/stories.yml", "stories:\n",
                     "stories:\n- story: thanks\n  steps:\n  - intent: thankyou\n  - action: utter_you_are_welcome\n")],
    "response changed": [("domain.yml", "Goodbye, have a good trip!", "Bye!")],
    "intent added": [("data/nlu.yml", "- synonym: New York", "- intent: ask_time\n  examples: |\n    - what time is it\n    - the time?\n\n- synonym: New York"),
                     ("domain.yml", "  - inform\n", "  - inform\n  - ask_time\n")],
    "policy changed": [("config.yml", "max_history: 5", "max_history: 3")],
}


@pytest.mark.parametrize(
    "change, force, expected",
    [
        ("unchanged", False, 0),
        ("examples added", False, 2),
        ("story added", False, 1),
        ("response changed", False, 4),
        ("intent added", False, 3),
        ("policy changed", False, 1),
        ("unchanged", True, 11),
    ],
    ids=["unchanged", "examples-added", "story-added", "responses-only", "intent-added", "policy-changed", "forced"],
)
def test_dry_run_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, force: bool, expected: int) -> None:
    work = tmp_path / "assistant"
    shutil.copytree(EXAMPLE, work)
    _seed_model(work, work / "models")
    for file, old, new in EDITS[change]:
        _edit(work / file, old, new)
    monkeypatch.chdir(work)
    result = train("domain.yml", "config.yml", ["data"], output="models", dry_run=True, force_training=force)
    assert result.model is None
    assert result.code == expected, result.dry_run_results
    assert result.dry_run_results, "a dry run explains itself"


def test_dry_run_without_previous_model_trains_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "assistant"
    shutil.copytree(EXAMPLE, work)
    monkeypatch.chdir(work)
    result = train("domain.yml", "config.yml", "data", output="models", dry_run=True)
    assert result.code == 3
    assert "no previous model" in result.dry_run_results[0]


def test_without_domain_only_nlu_is_planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "assistant"
    shutil.copytree(EXAMPLE, work)
    (work / "domain.yml").unlink()
    monkeypatch.chdir(work)
    result = train("domain.yml", "config.yml", ["data/nlu.yml"], output="models", dry_run=True)
    assert result.code == 2
    assert any("NLU model only" in w.message for w in result.warnings)


def test_dry_run_returns_the_decision_it_acts_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a model to finetune, added examples are trained in full, and the decision returned says so."""
    work = tmp_path / "assistant"
    shutil.copytree(EXAMPLE, work)
    _seed_model(work, work / "models")
    for file, old, new in EDITS["examples added"]:
        _edit(work / file, old, new)
    monkeypatch.chdir(work)
    result = train("domain.yml", "config.yml", ["data"], output="models", dry_run=True)
    decision = result.decision
    assert decision is not None
    assert (decision.kind, decision.nlu, decision.core, decision.code) == ("full", "full", "keep", result.code)
    assert decision.reasons[-1] == "no model to finetune given (--finetune): changed parts are trained in full"
    assert result.dry_run_results == decision.reasons
    # only the dialogue model asked for: nothing of it changed, nothing is trained
    core_only = train_core("domain.yml", "config.yml", ["data"], output="models", dry_run=True).decision
    assert core_only is not None
    assert (core_only.kind, core_only.nlu, core_only.core, core_only.code) == ("skip", "keep", "keep", 0)
    assert core_only.reasons[-1] == "NLU model not trained: only the dialogue model was asked for"
