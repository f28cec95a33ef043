"""``--compare-config default``: when it compares, what it trains, what the summary says; one CI run end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping

import pytest

from pipeline.cli import main
from pipeline.compare import Comparison, compare_with_default, comparison_skip_reason, default_config
from pipeline.data.model import Component, Config, NluData, NluExample, freeze

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "assistant"

SPARSE = (
    Component("WhitespaceTokenizer"),
    Component("CountVectorsFeaturizer"),
    Component("DIETClassifier", freeze({"epochs": 100})),
)
TEST = NluData(examples=(NluExample("hello there", "greet"), NluExample("bye", "goodbye")))


@pytest.mark.parametrize(
    ("config", "test", "reason"),
    [
        pytest.param(Config(language="en", pipeline=SPARSE), TEST, None, id="english-sparse-compares"),
        pytest.param(Config(language="en_US", pipeline=SPARSE), TEST, None, id="english-variant-compares"),
        pytest.param(
            Config(language="en", pipeline=(*SPARSE[:2], Component("LanguageModelFeaturizer"), SPARSE[2])), TEST,
            "already has deltatrain's pretrained features", id="dense-features-already",
        ),
        pytest.param(Config(language="en", pipeline_is_default=True), TEST, "already has", id="default-pipeline"),
        pytest.param(Config(language="de", pipeline=SPARSE), TEST, "received language 'de'", id="not-english"),
        pytest.param(Config(language="en", pipeline=SPARSE), NluData(), "no NLU test data", id="no-test-data"),
    ],
)
def test_when_the_default_pipeline_is_compared(config: Config, test: NluData, reason: str | None) -> None:
    got = comparison_skip_reason(config, test)
    assert got is None if reason is None else reason in (got or "")


def test_default_config_has_pretrained_features_and_the_epochs_override() -> None:
    config = default_config(Config(language="en", pipeline=SPARSE), epochs=3)
    names = [c.name for c in config.pipeline]
    assert "LanguageModelFeaturizer" in names and names.index("LanguageModelFeaturizer") < names.index("DIETClassifier")
    (diet,) = [c for c in config.pipeline if c.name == "DIETClassifier"]
    assert diet.options["epochs"] == 3


def test_compare_trains_the_default_pipeline_on_the_team_data_and_reports_the_gain() -> None:
    trained: list[tuple[NluData, Config]] = []
    data = NluData(examples=(NluExample("hi", "greet"), NluExample("ciao", "goodbye")))

    def train(d: NluData, c: Config) -> str:
        trained.append((d, c))
        return "model"

    def evaluate(model: Any, test: NluData) -> Mapping[str, float | None]:
        assert model == "model" and test is TEST
        return {"intent_accuracy": 0.95, "entity_f1": 0.88}

    note = compare_with_default(
        Config(language="en", pipeline=SPARSE), data, TEST, {"intent_accuracy": 0.93, "entity_f1": 0.87}, train, evaluate
    )
    assert [d for d, _ in trained] == [data]
    assert any(c.name == "LanguageModelFeaturizer" for c in trained[0][1].pipeline)
    assert "intent accuracy 0.950 vs 0.930 (+0.020)" in note and "entity F1 0.880 vs 0.870 (+0.010)" in note
    assert "add `- name: LanguageModelFeaturizer`" in note


def test_no_gain_is_said_and_nothing_is_trained_when_skipped() -> None:
    note = Comparison({"intent_accuracy": 0.90, "entity_f1": None}, {"intent_accuracy": 0.91, "entity_f1": 0.5}, 3.0).note()
    assert "intent accuracy 0.900 vs 0.910 (-0.010)" in note and "no gain" in note and "entity F1" not in note

    def train(d: NluData, c: Config) -> None:
        raise AssertionError("must not train")

    note = compare_with_default(Config(language="de", pipeline=SPARSE), NluData(), TEST, {}, train, train)  # type: ignore[arg-type]
    assert note.startswith("--compare-config default: not compared (")


@pytest.mark.slow
def test_ci_step_reports_the_default_pipeline_only_when_asked(tmp_path: Path) -> None:
    work = tmp_path / "assistant"
    shutil.copytree(EXAMPLE, work)
    config = work / "config.yml"
    config.write_text(config.read_text().replace("  - name: LanguageModelFeaturizer\n", ""))
    report = tmp_path / "report.json"
    argv = ["ci", "-C", str(work), "--epochs", "2", "--no-upload", "--no-git", "--report-json", str(report)]
    assert main([*argv, "--compare-config", "default"], environ={}) == 0
    result = json.loads(report.read_text())
    (note,) = [n for n in result["notes"] if "default pipeline" in n]
    assert note.startswith("compared with deltatrain's default pipeline") and "intent accuracy" in note
    assert "compare_seconds" in result["timings"]
    assert main([*argv, "--mode", "full"], environ={}) == 0
    assert not any("default pipeline" in n for n in json.loads(report.read_text())["notes"])
