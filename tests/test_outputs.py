"""One declaration per concept: the step outputs and the gate metrics, held to action.yml, the GitLab
component and the CLI flags (the copies that must exist outside Python)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import action
from pipeline.ci import CiResult
from pipeline.cli import build_parser
from pipeline.decision import FINETUNE, FULL, REPACKAGE, SKIP, Decision
from pipeline.errors import UsageError
from pipeline.metrics import CI_METRICS, FLOOR_METRICS, GATED_METRICS, GateCheck, GateResult
from pipeline.report import ERROR_DECISION, METRIC_TITLES, OUTPUT_NAMES, build_error_outputs, build_outputs

ROOT = Path(__file__).resolve().parent.parent
ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
COMPONENT_TEXT = (ROOT / "templates" / "deltatrain.yml").read_text(encoding="utf-8")
COMPONENT_INPUTS = next(yaml.safe_load_all(COMPONENT_TEXT))["spec"]["inputs"]


def _result() -> CiResult:
    decision = Decision(kind=FULL, nlu=FULL, core=FULL, reasons=("no previous model",))
    gate = GateResult(False, (GateCheck("intent_f1_per_intent", -0.5, None, None, 0.1, False, "dropped", ("greet",)),))
    return CiResult(decision=decision, model_name="m1", metrics={"intent_f1": 0.9, "entity_f1": None}, gate=gate)


def test_build_outputs_the_declared_outputs_and_action_yml_name_the_same_outputs_in_one_order() -> None:
    outputs = build_outputs(_result())

    assert list(outputs) == list(OUTPUT_NAMES) == list(ACTION["outputs"])
    assert outputs["intent-f1"] == "0.9000" and outputs["entity-f1"] == "" and outputs["dropped-intents"] == "greet"


def test_every_action_output_is_read_from_the_step_that_wrote_it() -> None:
    for name, spec in ACTION["outputs"].items():
        assert spec["description"], name
        assert spec["value"] == f"${{{{ steps.train.outputs.{name} || steps.decide.outputs.{name} }}}}", name


def test_the_gitlab_component_names_only_real_outputs() -> None:
    named = set(re.findall(r"\$DELTATRAIN_([A-Z_]+)", COMPONENT_TEXT))
    dotenv = {name.upper().replace("-", "_") for name in OUTPUT_NAMES}
    assert named and named <= dotenv, named - dotenv


def test_the_decision_output_documents_every_value_it_takes() -> None:
    description = ACTION["outputs"]["decision"]["description"]
    for value in (SKIP, REPACKAGE, FINETUNE, FULL, ERROR_DECISION):
        assert f"`{value}`" in description, value
    assert build_error_outputs(UsageError("bad input")) == {"decision": ERROR_DECISION, "reason": "bad input"}


@pytest.mark.parametrize("metric", CI_METRICS, ids=[m.key for m in CI_METRICS])
def test_each_metric_is_declared_once_and_reaches_every_place(metric: Any) -> None:
    assert METRIC_TITLES[metric.key] == metric.title
    assert (metric.key in GATED_METRICS) is metric.gated
    if metric.output:
        assert metric.output in ACTION["outputs"] and metric.output in OUTPUT_NAMES
    if metric.floor_flag:
        flag = metric.floor_flag
        assert flag in ACTION["inputs"] and flag in COMPONENT_INPUTS and flag in action.VALUE_INPUTS
        assert ACTION["inputs"][flag]["default"] == COMPONENT_INPUTS[flag]["default"] == ""
        args = build_parser().parse_args(["ci", f"--{flag}", "0.5"])
        assert getattr(args, str(metric.floor_field)) == 0.5


def test_floors_come_first_in_the_gate_order() -> None:
    assert GATED_METRICS[: len(FLOOR_METRICS)] == tuple(m.key for m in FLOOR_METRICS)
