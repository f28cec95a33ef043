"""Fingerprints hash content, not bytes; change summaries and decisions per scenario."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.data.loader import DirectorySource, load_project
from pipeline.decision import DecisionOptions, decide
from pipeline.fingerprint import Fingerprint, Section, compute_fingerprint, summarize_changes
from tests.helpers import write_project

CONFIG = """
language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: DIETClassifier
    epochs: 10
policies:
  - name: RulePolicy
  - name: TEDPolicy
    epochs: 5
"""
DOMAIN = """
version: "3.1"
intents:
  - greet
  - ask_weather
entities:
  - city
slots:
  city:
    type: text
    mappings:
      - type: from_entity
        entity: city
responses:
  utter_greet:
    - text: "Hello!"
  utter_weather:
    - text: "Sunny."
"""
NLU = """
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hello
    - hi there
- intent: ask_weather
  examples: |
    - weather in [Paris](city)
    - is it raining in [Rome](city)
"""
STORIES = """
version: "3.1"
stories:
- story: weather
  steps:
  - intent: greet
  - action: utter_greet
  - intent: ask_weather
  - action: utter_weather
"""
TESTS = """
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hey
"""

BASE = {
    "config.yml": CONFIG,
    "domain.yml": DOMAIN,
    "data/nlu.yml": NLU,
    "data/stories.yml": STORIES,
    "tests/nlu.yml": TESTS,
}


def fingerprint_of(tmp_path: Path, files: dict[str, str]) -> tuple[Fingerprint, object]:
    root = write_project(tmp_path, files)
    project, _ = load_project(DirectorySource(root))
    return compute_fingerprint(project), project


def edited(**changes: str) -> dict[str, str]:
    files = dict(BASE)
    for key, value in changes.items():
        files[key.replace("__", "/").replace("_yml", ".yml")] = value
    return files


def test_fingerprint_ignores_order_comments_and_whitespace(tmp_path: Path) -> None:
    first, _ = fingerprint_of(tmp_path / "a", BASE)
    reordered = """
    version: "3.1"
    # a comment that changes nothing
    nlu:
    - intent: ask_weather
      examples: |
        - is it raining in [Rome](city)
        - weather in [Paris](city)

    - intent: greet
      examples: |
        - hi there
        - hello
    """
    second, _ = fingerprint_of(tmp_path / "b", {**BASE, "data/nlu.yml": reordered})
    assert first["sections"] == second["sections"]
    stored = json.loads(json.dumps(first.to_json()))  # JSON-serialisable, round-trips
    assert Fingerprint.from_json(stored) == first and Fingerprint.from_json(stored).to_json() == first.to_json()


def test_fingerprint_holds_no_paths_or_times(tmp_path: Path) -> None:
    fp, _ = fingerprint_of(tmp_path, BASE)
    text = json.dumps(fp.to_json())
    assert str(tmp_path) not in text
    assert "nlu.yml" not in text


NLU_ADDED = NLU + "    - what's the forecast for [Oslo](city)\n"
NLU_NEW_INTENT = NLU + """- intent: goodbye
  examples: |
    - bye
    - see you
"""
NLU_RENAMED = NLU.replace("- intent: greet", "- intent: hello")
DOMAIN_NEW_INTENT = DOMAIN.replace("  - ask_weather\n", "  - ask_weather\n  - goodbye\n")
NLU_REMOVED = NLU.replace("    - hi there\n", "")
NLU_NEW_ENTITY = NLU + "    - weather [tomorrow](date)\n"
NLU_NEW_ROLE = NLU + '    - fly to [Oslo]{"entity": "city", "role": "to"}\n'
NLU_SYNONYM = NLU + """- synonym: Paris
  examples: |
    - paname
"""
DOMAIN_RESPONSE = DOMAIN.replace('"Sunny."', '"Sunny today."')
DOMAIN_SLOT = DOMAIN + """  mood:
    type: categorical
    values: [happy, sad]
""".replace("  mood:", "")
DOMAIN_NEW_SLOT = DOMAIN.replace(
    "responses:", "  mood:\n    type: bool\n    mappings:\n      - type: from_intent\n        intent: greet\n        value: true\nresponses:"
)
CONFIG_EPOCHS = CONFIG.replace("epochs: 10", "epochs: 20")
CONFIG_PIPELINE = CONFIG.replace("  - name: DIETClassifier", "  - name: CountVectorsFeaturizer\n    analyzer: char_wb\n  - name: DIETClassifier")
CONFIG_POLICY = CONFIG.replace("epochs: 5", "epochs: 5\n    max_history: 3")
STORIES_ADDED = STORIES + """- story: greet only
  steps:
  - intent: greet
  - action: utter_greet
"""
STORIES_EDITED = STORIES.replace("utter_weather", "utter_greet")
TESTS_CHANGED = TESTS + "    - good morning\n"

# id, changed files, expected changed sections (subset check), summary checks, decision (kind, nlu, core, code)
SCENARIOS = [
    ("unchanged", {}, set(), {}, ("skip", "keep", "keep", 0)),
    ("examples added", {"data/nlu.yml": NLU_ADDED}, {"nlu_examples"},
     {"examples_added": {"ask_weather": 1}}, ("finetune", "finetune", "keep", 2)),
    ("intent added", {"data/nlu.yml": NLU_NEW_INTENT}, {"nlu_examples", "nlu_labels"},
     {"intents_added": ("goodbye",), "examples_added": {"goodbye": 2}}, ("finetune", "finetune", "keep", 2)),
    ("intent added to data and domain", {"data/nlu.yml": NLU_NEW_INTENT, "domain.yml": DOMAIN_NEW_INTENT},
     {"nlu_labels", "domain_without_responses"}, {"intents_added": ("goodbye",), "domain_not_growth": ()},
     ("finetune", "finetune", "finetune", 3)),
    ("intent renamed", {"data/nlu.yml": NLU_RENAMED}, {"nlu_labels"},
     {"intents_added": ("hello",), "intents_removed": ("greet",)}, ("full", "full", "keep", 2)),
    ("intent removed from domain", {"domain.yml": DOMAIN.replace("  - greet\n", "")}, {"domain_without_responses"},
     {"domain_not_growth": ("intent `greet` removed from the domain",)}, ("full", "keep", "full", 1)),
    ("example removed", {"data/nlu.yml": NLU_REMOVED}, {"nlu_examples"},
     {"examples_removed": {"greet": 1}}, ("full", "full", "keep", 2)),
    ("entity added", {"data/nlu.yml": NLU_NEW_ENTITY}, {"nlu_labels"},
     {"entities_added": ("date",)}, ("finetune", "finetune", "keep", 2)),
    ("role added", {"data/nlu.yml": NLU_NEW_ROLE}, {"nlu_labels"},
     {"roles_added": ("city:to",)}, ("full", "full", "keep", 2)),
    ("synonym added", {"data/nlu.yml": NLU_SYNONYM}, {"nlu_features"}, {}, ("full", "full", "keep", 2)),
    ("response text changed", {"domain.yml": DOMAIN_RESPONSE}, {"responses"}, {}, ("repackage", "keep", "keep", 4)),
    ("slot added", {"domain.yml": DOMAIN_NEW_SLOT}, {"domain_without_responses"},
     {"domain_added": {"slots": ("mood",)}}, ("full", "keep", "full", 1)),
    ("nlu epochs changed", {"config.yml": CONFIG_EPOCHS}, {"config_nlu"}, {}, ("full", "full", "keep", 2)),
    ("pipeline changed", {"config.yml": CONFIG_PIPELINE}, {"config_nlu", "config_nlu_without_epochs"}, {},
     ("full", "full", "keep", 2)),
    ("policy changed", {"config.yml": CONFIG_POLICY}, {"config_core", "config_core_without_epochs"}, {},
     ("full", "keep", "full", 1)),
    ("story added", {"data/stories.yml": STORIES_ADDED}, {"stories"}, {"stories_added": 1},
     ("finetune", "keep", "finetune", 1)),
    ("story edited", {"data/stories.yml": STORIES_EDITED}, {"stories"}, {"stories_added": 1, "stories_removed": 1},
     ("full", "keep", "full", 1)),
    ("test data only", {"tests/nlu.yml": TESTS_CHANGED}, {"test_data"}, {}, ("skip", "keep", "keep", 0)),
    ("examples and story added", {"data/nlu.yml": NLU_ADDED, "data/stories.yml": STORIES_ADDED},
     {"nlu_examples", "stories"}, {}, ("finetune", "finetune", "finetune", 3)),
]


@pytest.mark.parametrize(
    "changed_files, sections, summary, expected",
    [pytest.param(files, sections, summary, expected, id=name) for name, files, sections, summary, expected in SCENARIOS],
)
def test_change_summary_and_decision(
    tmp_path: Path, changed_files: dict, sections: set, summary: dict, expected: tuple
) -> None:
    before, _ = fingerprint_of(tmp_path / "before", BASE)
    after, project = fingerprint_of(tmp_path / "after", {**BASE, **changed_files})
    changes = summarize_changes(before, after, project)
    changed = set(changes.changed_sections)
    assert sections <= changed, changes.changed_sections
    if not sections:
        assert changed == set()
    for field_name, value in summary.items():
        assert getattr(changes, field_name) == value, field_name
    decision = decide(before, {"finetunes_in_a_row": 0}, changes, DecisionOptions())
    assert (decision.kind, decision.nlu, decision.core, decision.code) == expected
    assert decision.reasons and all(isinstance(r, str) and r for r in decision.reasons)


def test_added_intent_reason_names_file_and_line(tmp_path: Path) -> None:
    before, _ = fingerprint_of(tmp_path / "before", BASE)
    after, project = fingerprint_of(tmp_path / "after", {**BASE, "data/nlu.yml": NLU_NEW_INTENT})
    decision = decide(before, {}, summarize_changes(before, after, project))
    assert any("intent `goodbye` added in data/nlu.yml:13" in r for r in decision.reasons), decision.reasons
    assert decision.kind == "finetune" and "label space grows" in decision.reason


@pytest.mark.parametrize(
    "options, metadata, previous, expected_kind, reason_fragment",
    [
        pytest.param(DecisionOptions(scheduled=True), {}, True, "full", "scheduled", id="schedule"),
        pytest.param(DecisionOptions(mode="full"), {}, True, "full", "--mode full", id="mode-full"),
        pytest.param(DecisionOptions(), {}, False, "full", "no previous model", id="no-previous"),
        pytest.param(DecisionOptions(max_finetunes=5), {"finetunes_in_a_row": 5}, True, "full", "5 finetunes in a row",
                     id="too-many-finetunes"),
        pytest.param(DecisionOptions(max_finetunes=5), {"finetunes_in_a_row": 4}, True, "finetune", "added", id="under-limit"),
    ],
)
def test_decision_overrides(
    tmp_path: Path, options: DecisionOptions, metadata: dict, previous: bool, expected_kind: str, reason_fragment: str
) -> None:
    before, _ = fingerprint_of(tmp_path / "before", BASE)
    after, project = fingerprint_of(tmp_path / "after", {**BASE, "data/nlu.yml": NLU_ADDED})
    changes = summarize_changes(before, after, project) if previous else None
    decision = decide(before if previous else None, metadata, changes, options)
    assert decision.kind == expected_kind
    assert reason_fragment in decision.reason
    if expected_kind == "finetune":
        assert decision.finetunes_in_a_row == metadata["finetunes_in_a_row"] + 1


def test_other_model_format_forces_full(tmp_path: Path) -> None:
    before, _ = fingerprint_of(tmp_path, BASE)
    old = {**before, "model_format": "0"}
    decision = decide(old, {}, summarize_changes(old, before))
    assert decision.kind == "full" and "model format 0" in decision.reason


def test_mode_finetune_cannot_finetune_renamed_intent(tmp_path: Path) -> None:
    before, _ = fingerprint_of(tmp_path / "before", BASE)
    after, project = fingerprint_of(tmp_path / "after", {**BASE, "data/nlu.yml": NLU_RENAMED})
    decision = decide(before, {}, summarize_changes(before, after, project), DecisionOptions(mode="finetune"))
    assert decision.nlu == "full"
    assert "intent `hello` added" in decision.reason and "intent `greet` removed" in decision.reason
    epochs, _ = fingerprint_of(tmp_path / "epochs", {**BASE, "config.yml": CONFIG_EPOCHS})
    decision = decide(before, {}, summarize_changes(before, epochs), DecisionOptions(mode="finetune"))
    assert decision.nlu == "finetune"


def test_nlu_only_project_never_trains_core(tmp_path: Path) -> None:
    files = {"config.yml": CONFIG, "data/nlu.yml": NLU}
    before, _ = fingerprint_of(tmp_path / "before", files)
    after, project = fingerprint_of(tmp_path / "after", {**files, "data/nlu.yml": NLU_NEW_INTENT})
    decision = decide(before, {}, summarize_changes(before, after, project), has_core=False)
    assert (decision.nlu, decision.core, decision.code) == ("finetune", "keep", 2)


def test_fingerprint_reads_like_its_stored_json(tmp_path: Path) -> None:
    fp, _ = fingerprint_of(tmp_path, BASE)
    stored = fp.to_json()
    assert list(stored) == ["fingerprint_format", "model_format", "sections", "labels", "domain_items", "domain",
                            "examples", "stories", "counts"]
    assert dict(fp) == stored and fp == stored and fp["counts"] == {**fp.counts}
    assert fp.section(Section.NLU_EXAMPLES) == stored["sections"]["nlu_examples"]
    assert all(isinstance(v, list) for v in stored["labels"].values())  # plain JSON types, not tuples


def test_an_old_fingerprint_still_loads_and_compares(tmp_path: Path) -> None:
    """Fingerprints written before per-item domain digests existed (and with a numeric model format)."""
    before, _ = fingerprint_of(tmp_path / "before", BASE)
    old = {k: v for k, v in before.to_json().items() if k != "domain_items"}
    old["model_format"] = int(old["model_format"])
    old["written_by_a_newer_version"] = {"kept": True}
    loaded = Fingerprint.from_json(json.loads(json.dumps(old)))
    assert loaded.domain_items is None and loaded.model_format == str(before.model_format)
    assert loaded.to_json()["written_by_a_newer_version"] == {"kept": True}
    after, project = fingerprint_of(tmp_path / "after", {**BASE, "domain.yml": DOMAIN_NEW_INTENT,
                                                         "data/nlu.yml": NLU_NEW_INTENT})
    changes = summarize_changes(old, after, project)
    assert changes.intents_added == ("goodbye",)
    # without per-item digests a domain change cannot be told to be growth: the dialogue model is retrained
    assert changes.domain_not_growth == ("the previous model's fingerprint has no per-item domain digests",)
    decision = decide(old, {}, changes)
    assert (decision.nlu, decision.core) == ("finetune", "full")


def test_an_unknown_section_is_kept_and_left_out_of_the_comparison(tmp_path: Path) -> None:
    fp, _ = fingerprint_of(tmp_path, BASE)
    newer = {**fp.to_json(), "sections": {**fp.to_json()["sections"], "future_section": "abc"}}
    assert Fingerprint.from_json(newer).sections["future_section"] == "abc"
    assert summarize_changes(newer, fp).nothing_changed  # only the sections this version knows are compared


def test_a_deferred_fingerprint_loads_its_digests_only_for_a_changed_section() -> None:
    from pipeline.fingerprint import DeferredFingerprint

    whole = {"sections": {"nlu_examples": "a", "stories": "b"},
             "examples": {"greet": ["1", "2"]}, "stories": ["s1"]}
    loads: list[int] = []

    def deferred() -> DeferredFingerprint:
        return DeferredFingerprint({"sections": whole["sections"]}, lambda: loads.append(1) or whole)

    assert summarize_changes(deferred(), whole).nothing_changed and loads == []
    stories = summarize_changes(deferred(), {**whole, "sections": {"nlu_examples": "a", "stories": "c"},
                                             "stories": ["s1", "s2"]})
    assert (stories.stories_added, stories.examples_added, loads) == (1, {}, [1])
    examples = summarize_changes(deferred(), {**whole, "sections": {"nlu_examples": "x", "stories": "b"},
                                              "examples": {"greet": ["2"]}})
    assert (examples.examples_removed, examples.stories_added, loads) == ({"greet": 1}, 0, [1, 1])
