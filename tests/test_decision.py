"""Decisions straight from change summaries: every kind and every reason path, no YAML, no loader."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline import MODEL_FORMAT_VERSION
from pipeline.decision import (
    FINETUNE,
    FULL,
    KEEP,
    REPACKAGE,
    SKIP,
    Decision,
    DecisionKind,
    DecisionOptions,
    Mode,
    Part,
    PartAction,
    check_epoch_fraction,
    decide,
    finetune_blockers,
    kind_of,
    without_finetune,
)
from pipeline.errors import UsageError
from pipeline.fingerprint import ChangeSummary, Section

PREVIOUS = {"model_format": MODEL_FORMAT_VERSION}
S = Section

#: a domain change that only added an intent (what summarize_changes reports for it)
DOMAIN_GREW = ChangeSummary(
    changed_sections=(S.DOMAIN_WITHOUT_RESPONSES,), domain_added={"intents": ("goodbye",)},
)
#: a domain change beyond growth: a slot added
DOMAIN_SLOT = ChangeSummary(
    changed_sections=(S.DOMAIN_WITHOUT_RESPONSES,), domain_added={"slots": ("mood",)},
    domain_not_growth=("slots, actions, forms or session settings changed in the domain",),
)
EXAMPLES_ADDED = ChangeSummary(changed_sections=(S.NLU_EXAMPLES,), examples_added={"greet": 2, "bye": 1})
STORIES_ADDED = ChangeSummary(changed_sections=(S.STORIES,), stories_added=2)
NLU_CONFIG = (S.CONFIG_NLU, S.CONFIG_NLU_WITHOUT_EPOCHS)
CORE_CONFIG = (S.CONFIG_CORE, S.CONFIG_CORE_WITHOUT_EPOCHS)


def _decide(changes: ChangeSummary, mode: Mode = Mode.AUTO, *, finetunes: int = 0, has_core: bool = True,
            **options: Any) -> Decision:
    return decide(PREVIOUS, {"finetunes_in_a_row": finetunes}, changes, DecisionOptions(mode=mode, **options),
                  has_core=has_core)


# kind, nlu, core, and a fragment of the reasons for each change
AUTO = [
    pytest.param(ChangeSummary(), (SKIP, KEEP, KEEP), "nothing changed since the previous model", id="nothing"),
    pytest.param(ChangeSummary(changed_sections=(S.TEST_DATA,)), (SKIP, KEEP, KEEP), "nothing changed", id="tests-only"),
    pytest.param(ChangeSummary(changed_sections=(S.RESPONSES,)), (REPACKAGE, KEEP, KEEP),
                 "only responses changed: repackage", id="responses"),
    pytest.param(ChangeSummary(changed_sections=(S.CONFIG_OTHER,)), (REPACKAGE, KEEP, KEEP),
                 "only config recipe/assistant_id changed", id="recipe"),
    pytest.param(EXAMPLES_ADDED, (FINETUNE, FINETUNE, KEEP),
                 "3 NLU example(s) added to existing intents (greet +2, bye +1)", id="examples-added"),
    pytest.param(STORIES_ADDED, (FINETUNE, KEEP, FINETUNE), "2 story/rule(s) added with an unchanged domain",
                 id="stories-added"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_EXAMPLES, S.STORIES), examples_added={"greet": 1},
                               stories_added=1), (FINETUNE, FINETUNE, FINETUNE), "1 story/rule(s) added",
                 id="examples-and-stories-added"),
    # issue 17: a new intent grows the label space in a finetune, with where it was added
    pytest.param(ChangeSummary(changed_sections=(S.NLU_EXAMPLES, S.NLU_LABELS), intents_added=("goodbye",),
                               examples_added={"goodbye": 2}, locations={"goodbye": "data/nlu.yml:13"}),
                 (FINETUNE, FINETUNE, KEEP), "intent `goodbye` added in data/nlu.yml:13", id="intent-added"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_EXAMPLES, S.NLU_LABELS), entities_added=("date",),
                               examples_added={"greet": 1}), (FINETUNE, FINETUNE, KEEP),
                 "the NLU model's label space grows", id="entity-added"),
    pytest.param(DOMAIN_GREW, (FINETUNE, KEEP, FINETUNE),
                 "domain gained intents goodbye: the dialogue model's input features grow", id="domain-grew"),
    # the finetune rule's blockers: a full training whatever the mode
    pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), intents_removed=("greet",)),
                 (FULL, FULL, KEEP), "intent `greet` removed", id="intent-removed"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), intents_added=("hello",), intents_removed=("greet",)),
                 (FULL, FULL, KEEP), "intent `hello` added; intent `greet` removed", id="intent-renamed"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), entities_removed=("city",)),
                 (FULL, FULL, KEEP), "entity `city` removed", id="entity-removed"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), roles_added=("city:to",)),
                 (FULL, FULL, KEEP), "entity role `city:to` added", id="role-added"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), roles_removed=("city:to",)),
                 (FULL, FULL, KEEP), "entity role `city:to` removed", id="role-removed"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), groups_added=("city:1",)),
                 (FULL, FULL, KEEP), "entity group `city:1` added", id="group-added"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), groups_removed=("city:1",)),
                 (FULL, FULL, KEEP), "entity group `city:1` removed", id="group-removed"),
    pytest.param(ChangeSummary(changed_sections=NLU_CONFIG), (FULL, FULL, KEEP), "NLU pipeline config changed",
                 id="nlu-config"),
    pytest.param(ChangeSummary(changed_sections=CORE_CONFIG), (FULL, KEEP, FULL), "policy config changed",
                 id="policy-config"),
    pytest.param(DOMAIN_SLOT, (FULL, KEEP, FULL), "domain changed (slots added: mood)", id="domain-changed"),
    # changes a finetune could absorb, that --mode auto trains in full
    pytest.param(ChangeSummary(changed_sections=(S.NLU_EXAMPLES,), examples_removed={"greet": 1}),
                 (FULL, FULL, KEEP), "1 NLU example(s) removed or edited (greet -1)", id="example-removed"),
    pytest.param(ChangeSummary(changed_sections=(S.CONFIG_NLU,)), (FULL, FULL, KEEP), "NLU epochs changed in config",
                 id="nlu-epochs"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_FEATURES,)), (FULL, FULL, KEEP),
                 "regexes, lookup tables or synonyms changed", id="nlu-features"),
    pytest.param(ChangeSummary(changed_sections=(S.RETRIEVAL_RESPONSES,)), (FULL, FULL, KEEP),
                 "the ResponseSelector stores them", id="retrieval-responses"),
    pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,)), (FULL, FULL, KEEP),
                 "NLU labels changed (retrieval intents)", id="retrieval-intents"),
    pytest.param(ChangeSummary(changed_sections=(S.CONFIG_CORE,)), (FULL, KEEP, FULL), "policy epochs changed in config",
                 id="policy-epochs"),
    pytest.param(ChangeSummary(changed_sections=(S.STORIES,), stories_removed=1, stories_added=1), (FULL, KEEP, FULL),
                 "1 story/rule(s) removed or edited", id="story-edited"),
]


@pytest.mark.parametrize(("changes", "expected", "reason"), AUTO)
def test_auto_decision(changes: ChangeSummary, expected: tuple[str, str, str], reason: str) -> None:
    decision = _decide(changes)
    assert (decision.kind, decision.nlu, decision.core) == expected
    assert reason in decision.reason, decision.reasons
    assert decision.trains == (expected[0] in (FINETUNE, FULL))


def test_an_unchanged_part_is_named_as_reused() -> None:
    decision = _decide(EXAMPLES_ADDED)
    assert decision.reasons[-1] == "dialogue model unchanged: reused from the previous model"
    assert _decide(STORIES_ADDED).reasons[-1] == "NLU model unchanged: reused from the previous model"


def test_responses_changed_beside_training_are_named() -> None:
    changes = ChangeSummary(changed_sections=(S.NLU_EXAMPLES, S.RESPONSES), examples_added={"greet": 1})
    decision = _decide(changes)
    assert decision.kind == FINETUNE and decision.reasons[-1] == "responses changed" and not decision.repackage


def test_test_data_change_is_a_note_not_a_reason() -> None:
    decision = _decide(ChangeSummary(changed_sections=(S.TEST_DATA, S.NLU_EXAMPLES), examples_added={"greet": 1}))
    assert decision.kind == FINETUNE
    assert decision.notes == ("test data changed (used for testing only, not for training)",)
    assert not any("test data" in r for r in decision.reasons)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(ChangeSummary(changed_sections=(S.NLU_EXAMPLES,), examples_removed={"greet": 1}),
                     (FINETUNE, FINETUNE, KEEP), id="example-removed"),
        pytest.param(ChangeSummary(changed_sections=(S.CONFIG_NLU,)), (FINETUNE, FINETUNE, KEEP), id="nlu-epochs"),
        pytest.param(ChangeSummary(changed_sections=(S.NLU_FEATURES,)), (FINETUNE, FINETUNE, KEEP), id="features"),
        pytest.param(ChangeSummary(changed_sections=(S.CONFIG_CORE,)), (FINETUNE, KEEP, FINETUNE), id="policy-epochs"),
        pytest.param(ChangeSummary(changed_sections=(S.STORIES,), stories_removed=1), (FINETUNE, KEEP, FINETUNE),
                     id="story-removed"),
    ],
)
def test_mode_finetune_finetunes_what_a_finetune_can_absorb(changes: ChangeSummary, expected: tuple[str, ...]) -> None:
    decision = _decide(changes, Mode.FINETUNE)
    assert (decision.kind, decision.nlu, decision.core) == expected
    assert "finetune requested (--mode finetune)" in decision.reasons
    assert _decide(changes).kind == FULL  # what --mode auto does with it


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), intents_removed=("greet",)), id="intent-removed"),
        pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), roles_added=("city:to",)), id="role-added"),
        pytest.param(ChangeSummary(changed_sections=(S.NLU_LABELS,), groups_removed=("city:1",)), id="group-removed"),
        pytest.param(ChangeSummary(changed_sections=NLU_CONFIG), id="nlu-config"),
        pytest.param(ChangeSummary(changed_sections=CORE_CONFIG), id="policy-config"),
        pytest.param(DOMAIN_SLOT, id="domain-changed"),
    ],
)
def test_mode_finetune_never_finetunes_past_a_blocker(changes: ChangeSummary) -> None:
    decision = _decide(changes, Mode.FINETUNE)
    assert decision.kind == FULL
    assert not any("finetune requested" in r for r in decision.reasons)


def test_nothing_to_finetune() -> None:
    decision = _decide(ChangeSummary(), Mode.FINETUNE, finetunes=3)
    assert (decision.kind, decision.reason) == (SKIP, "nothing changed since the previous model; nothing to finetune")
    assert _decide(ChangeSummary(), finetunes=3).finetunes_in_a_row == 3  # a skip keeps the count


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        pytest.param({"scheduled": True}, "scheduled run: nightly full retrain", id="scheduled"),
        pytest.param({"mode": Mode.FULL}, "full retrain requested (--mode full)", id="mode-full"),
        pytest.param({"force": True}, "training forced (--force)", id="force"),
    ],
)
def test_full_on_request(options: dict[str, Any], reason: str) -> None:
    decision = decide(PREVIOUS, {}, ChangeSummary(), DecisionOptions(**options))
    assert (decision.kind, decision.nlu, decision.core, decision.reasons) == (FULL, FULL, FULL, (reason,))
    assert decision.code == 3 and decision.finetunes_in_a_row == 0


def test_max_finetunes_in_a_row() -> None:
    at_limit = _decide(EXAMPLES_ADDED, finetunes=5, max_finetunes=5)
    assert (at_limit.kind, at_limit.nlu) == (FULL, FULL) and at_limit.finetunes_in_a_row == 0
    assert "5 finetunes in a row since the last full training (limit --max-finetunes 5)" in at_limit.reasons
    under = _decide(EXAMPLES_ADDED, finetunes=4, max_finetunes=5)
    assert (under.kind, under.finetunes_in_a_row) == (FINETUNE, 5)
    asked = _decide(EXAMPLES_ADDED, Mode.FINETUNE, finetunes=9, max_finetunes=5)  # --mode finetune: no limit
    assert (asked.kind, asked.finetunes_in_a_row) == (FINETUNE, 10)


@pytest.mark.parametrize(
    ("previous", "changes", "problem", "reason"),
    [
        pytest.param(None, None, None, "no previous model in the store", id="no-previous"),
        pytest.param(None, None, "previous model m1 cannot be used (truncated archive)",
                     "previous model m1 cannot be used (truncated archive)", id="previous-problem"),
        pytest.param({"model_format": "0"}, ChangeSummary(), None,
                     f"previous model has model format 0, this deltatrain writes {MODEL_FORMAT_VERSION}",
                     id="other-format"),
        pytest.param({}, ChangeSummary(), None, "previous model has model format unknown", id="no-format"),
    ],
)
def test_full_without_a_usable_previous_model(
    previous: dict[str, Any] | None, changes: ChangeSummary | None, problem: str | None, reason: str
) -> None:
    decision = decide(previous, None, changes, previous_problem=problem)
    assert (decision.kind, decision.nlu, decision.core) == (FULL, FULL, FULL)
    assert decision.reason.startswith(reason)


def test_check_only_mode_decides_but_marks_it() -> None:
    decision = _decide(EXAMPLES_ADDED, Mode.SKIP_CHECK)
    assert decision.check_only and decision.kind == FINETUNE


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of .*'skip-check'.*got 'sometimes'"):
        decide(PREVIOUS, {}, ChangeSummary(), DecisionOptions(mode="sometimes"))


def test_without_dialogue_model_the_domain_change_is_only_a_reason() -> None:
    decision = _decide(DOMAIN_SLOT, has_core=False)
    assert (decision.kind, decision.nlu, decision.core) == (SKIP, KEEP, KEEP)
    assert decision.reasons == ("domain changed (slots added: mood)",)
    no_core = decide(None, None, None, has_core=False)
    assert (no_core.nlu, no_core.core, no_core.code) == (FULL, KEEP, 2)


def test_domain_growth_with_an_edited_story_trains_the_dialogue_model_in_full() -> None:
    changes = ChangeSummary(
        changed_sections=(S.DOMAIN_WITHOUT_RESPONSES, S.STORIES), domain_added={"intents": ("goodbye",)},
        stories_added=1, stories_removed=1,
    )
    decision = _decide(changes)
    assert decision.core == FULL
    assert decision.reasons[:2] == ("domain gained intents goodbye: the dialogue model's input features grow",
                                    "1 story/rule(s) removed or edited")


# ------------------------------------------------------------------ the finetune rule


@pytest.mark.parametrize(
    ("changes", "part", "expected"),
    [
        pytest.param(EXAMPLES_ADDED, Part.NLU, (), id="examples-added"),
        pytest.param(ChangeSummary(intents_added=("a",), entities_added=("e",)), Part.NLU, (), id="labels-grew"),
        pytest.param(ChangeSummary(intents_added=("hello",), entities_added=("day",), entities_removed=("date",)),
                     Part.NLU, ("intent `hello` added", "entity `day` added", "entity `date` removed"), id="rename"),
        pytest.param(ChangeSummary(roles_added=("r",), groups_removed=("g",)), Part.NLU,
                     ("entity role `r` added", "entity group `g` removed"), id="roles-groups"),
        pytest.param(ChangeSummary(changed_sections=(S.CONFIG_NLU,)), Part.NLU, (), id="epochs-only"),
        pytest.param(ChangeSummary(changed_sections=NLU_CONFIG), Part.NLU, ("NLU pipeline config changed",),
                     id="nlu-config"),
        pytest.param(ChangeSummary(changed_sections=NLU_CONFIG), Part.CORE, (), id="nlu-config-for-core"),
        pytest.param(ChangeSummary(intents_removed=("greet",)), Part.CORE, (), id="nlu-labels-for-core"),
        pytest.param(DOMAIN_GREW, Part.CORE, (), id="domain-grew"),
        pytest.param(DOMAIN_SLOT, Part.CORE, ("domain changed (slots added: mood)",), id="domain-changed"),
        pytest.param(ChangeSummary(changed_sections=CORE_CONFIG), Part.CORE, ("policy config changed",),
                     id="policy-config"),
        pytest.param(ChangeSummary(changed_sections=(S.STORIES,), stories_removed=3), Part.CORE, (),
                     id="stories-removed"),
    ],
)
def test_finetune_blockers(changes: ChangeSummary, part: Part, expected: tuple[str, ...]) -> None:
    assert finetune_blockers(changes, part) == expected


def test_finetune_blockers_take_the_callers_details() -> None:
    """The trainers' checks name each changed option or domain item; the rule stays the decision's."""
    changes = ChangeSummary(changed_sections=(*CORE_CONFIG, S.DOMAIN_WITHOUT_RESPONSES),
                            domain_not_growth=("slot 'city' changed in the domain",))
    details = {S.DOMAIN_WITHOUT_RESPONSES: ["slot 'city' changed in the domain"],
               S.CONFIG_CORE_WITHOUT_EPOCHS: ["TEDPolicy option 'transformer_size' changed from 32 to 64"]}
    assert finetune_blockers(changes, Part.CORE, details=details) == (
        "slot 'city' changed in the domain", "TEDPolicy option 'transformer_size' changed from 32 to 64")
    assert finetune_blockers(ChangeSummary(), Part.CORE, details=details) == ()  # details alone block nothing


# ------------------------------------------------------------------ vocabulary


def test_enums_read_and_serialise_as_the_strings_of_the_reports() -> None:
    decision = _decide(EXAMPLES_ADDED)
    assert decision.kind == "finetune" and decision.nlu == "finetune" and decision.core == "keep"
    assert json.loads(json.dumps(decision.to_dict()))["decision"] == "finetune"
    assert f"{decision.kind}/{decision.nlu}" == "finetune/finetune"
    assert [str(m) for m in Mode] == ["auto", "full", "finetune", "skip-check"]
    assert DecisionKind("repackage") is REPACKAGE and PartAction("keep") is KEEP
    assert decide(PREVIOUS, {}, ChangeSummary(), DecisionOptions(mode="full")).kind == FULL  # plain strings work


def test_kind_of_and_without_finetune() -> None:
    assert [kind_of(n, c) for n, c in ((KEEP, KEEP), (FINETUNE, KEEP), (KEEP, FULL), (FINETUNE, FULL))] == [
        SKIP, FINETUNE, FULL, FULL]
    decision = _decide(ChangeSummary(changed_sections=(S.NLU_EXAMPLES, S.STORIES), examples_added={"greet": 1},
                                     stories_added=1), finetunes=2)
    full = without_finetune(decision, "no model to finetune given")
    assert (full.kind, full.nlu, full.core, full.finetunes_in_a_row) == (FULL, FULL, FULL, 0)
    assert full.reasons == (*decision.reasons, "no model to finetune given")
    skip = _decide(ChangeSummary())
    assert without_finetune(skip, "unused") is skip


@pytest.mark.parametrize("value", [0.01, 0.2, 1, 1.0])
def test_epoch_fraction_accepted(value: float) -> None:
    assert check_epoch_fraction(value) == float(value)


@pytest.mark.parametrize("value", [0, 0.0, -0.5, 1.01, 2, True, "0.2", None, float("nan")])
def test_epoch_fraction_refused(value: object) -> None:
    with pytest.raises(UsageError, match=r"--epoch-fraction must be a number greater than 0 and at most 1, received"):
        check_epoch_fraction(value)
