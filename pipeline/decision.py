"""Decide what to do with a change: skip, repackage, finetune or full retrain.

Pure: takes the previous model's fingerprint/metadata (or ``None``), the
current fingerprint and the options; returns a :class:`Decision` that carries
its reasons. Nothing here reads files, unpacks archives or imports TensorFlow.

The decision is made per model part (NLU, dialogue) as in Rasa, so a change
to stories never retrains the NLU model; the overall ``kind`` is the biggest
action any part needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pipeline import MODEL_FORMAT_VERSION
from pipeline.fingerprint import ChangeSummary

KEEP, FINETUNE, FULL = "keep", "finetune", "full"
SKIP, REPACKAGE = "skip", "repackage"
MODES = ("auto", "full", "finetune", "skip-check")

#: Rasa's dry-run result bitmask.
CODE_CORE, CODE_NLU, CODE_RESPONSES, CODE_FORCED = 1, 2, 4, 8

_NLU_SECTIONS = ("config_nlu", "nlu_examples", "nlu_labels", "nlu_features", "retrieval_responses")
_CORE_SECTIONS = ("config_core", "stories")
_DOMAIN_SECTIONS = ("domain_without_responses",)


@dataclass(frozen=True)
class DecisionOptions:
    """Inputs of a decision that come from the user or the environment."""

    mode: str = "auto"
    scheduled: bool = False
    max_finetunes: int = 5
    force: bool = False


@dataclass(frozen=True)
class Decision:
    """What to train and why: ``kind`` is skip | repackage | finetune | full."""

    kind: str
    nlu: str  # keep | finetune | full
    core: str  # keep | finetune | full
    reasons: tuple[str, ...]
    repackage: bool = False
    check_only: bool = False
    changes: ChangeSummary | None = None
    finetunes_in_a_row: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def code(self) -> int:
        """Rasa's dry-run bitmask: 1 dialogue, 2 NLU, 4 responses only, 8 forced."""
        code = 0
        if self.core != KEEP:
            code |= CODE_CORE
        if self.nlu != KEEP:
            code |= CODE_NLU
        if self.kind == REPACKAGE:
            code |= CODE_RESPONSES
        return code

    @property
    def trains(self) -> bool:
        return self.nlu != KEEP or self.core != KEEP

    @property
    def reason(self) -> str:
        """All reasons in one line."""
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.kind,
            "nlu": self.nlu,
            "core": self.core,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "dry_run_code": self.code,
            "finetunes_in_a_row": self.finetunes_in_a_row,
            "changes": self.changes.to_dict() if self.changes else None,
        }


def decide(
    previous_fingerprint: Mapping[str, Any] | None,
    previous_metadata: Mapping[str, Any] | None,
    changes: ChangeSummary | None,
    options: DecisionOptions = DecisionOptions(),
    *,
    has_core: bool = True,
    previous_problem: str | None = None,
) -> Decision:
    """Decide skip / repackage / finetune / full for each model part, with reasons."""
    if options.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {options.mode!r}")
    check_only = options.mode == "skip-check"
    core_full = FULL if has_core else KEEP
    previous_finetunes = int((previous_metadata or {}).get("finetunes_in_a_row", 0) or 0)

    def full(*reasons: str) -> Decision:
        return Decision(FULL, FULL, core_full, tuple(reasons), check_only=check_only, changes=changes)

    if previous_fingerprint is None or changes is None:
        return full(previous_problem or "no previous model in the store")
    previous_format = str(previous_fingerprint.get("model_format", ""))
    if previous_format != MODEL_FORMAT_VERSION:
        return full(
            f"previous model has model format {previous_format or 'unknown'}, this deltatrain writes {MODEL_FORMAT_VERSION}"
        )
    if options.mode == "full" or options.force:
        return full("full retrain requested (--mode full)" if options.mode == "full" else "training forced (--force)")
    if options.scheduled:
        return full("scheduled run: nightly full retrain")

    notes = ()
    if changes.changed("test_data"):
        notes = ("test data changed (used for testing only, not for training)",)
    if changes.nothing_changed:
        if options.mode == "finetune":
            return Decision(
                SKIP, KEEP, KEEP, ("nothing changed since the previous model; nothing to finetune",),
                check_only=check_only, changes=changes, notes=notes,
            )
        return Decision(
            SKIP, KEEP, KEEP, ("nothing changed since the previous model",),
            check_only=check_only, changes=changes, finetunes_in_a_row=previous_finetunes, notes=notes,
        )

    nlu_action, nlu_reasons = _decide_nlu(changes, options)
    core_action, core_reasons = _decide_core(changes, options) if has_core else (KEEP, [])
    if changes.changed(*_DOMAIN_SECTIONS):
        reason = _domain_reason(changes)
        if has_core and changes.domain_only_grew:
            # new intents/entities only add input features: the dialogue model grows them
            core_reasons = [f"{reason}: the dialogue model's input features grow", *core_reasons]
            core_action = FULL if core_action == FULL else FINETUNE
        elif has_core:
            core_action, core_reasons = FULL, [reason, *core_reasons]
        if not has_core:
            nlu_reasons = [reason, *nlu_reasons]
    reasons = [*nlu_reasons, *core_reasons]

    finetuning = FINETUNE in (nlu_action, core_action)
    if finetuning and previous_finetunes >= options.max_finetunes and options.mode != "finetune":
        reasons.append(
            f"{previous_finetunes} finetunes in a row since the last full training (limit --max-finetunes {options.max_finetunes})"
        )
        nlu_action = FULL if nlu_action == FINETUNE else nlu_action
        core_action = FULL if core_action == FINETUNE else core_action

    responses_changed = changes.changed("responses", "config_other")
    if nlu_action == KEEP and core_action == KEEP:
        if responses_changed:
            what = "responses changed" if changes.changed("responses") else "config recipe/assistant_id changed"
            return Decision(
                REPACKAGE, KEEP, KEEP, (f"only {what}: repackage the previous model without training",),
                repackage=True, check_only=check_only, changes=changes,
                finetunes_in_a_row=previous_finetunes, notes=notes,
            )
        return Decision(
            SKIP, KEEP, KEEP, tuple(reasons) or ("no change that affects the models",),
            check_only=check_only, changes=changes, finetunes_in_a_row=previous_finetunes, notes=notes,
        )
    kind = FULL if FULL in (nlu_action, core_action) else FINETUNE
    for part, action in (("NLU model", nlu_action), ("dialogue model", core_action)):
        if action == KEEP:
            reasons.append(f"{part} unchanged: reused from the previous model")
    if responses_changed:
        reasons.append("responses changed")
    return Decision(
        kind,
        nlu_action,
        core_action,
        tuple(reasons),
        check_only=check_only,
        changes=changes,
        finetunes_in_a_row=previous_finetunes + 1 if kind == FINETUNE else 0,
        notes=notes,
    )


def _decide_nlu(changes: ChangeSummary, options: DecisionOptions) -> tuple[str, list[str]]:
    if not changes.changed(*_NLU_SECTIONS):
        return KEEP, []
    # added intents and entity types grow the label space in a finetune; everything else below needs a full training
    growth: list[str] = []
    for intent in changes.intents_added:
        where = changes.locations.get(intent)
        growth.append(f"intent `{intent}` added" + (f" in {where}" if where else ""))
    for entity in changes.entities_added:
        where = changes.locations.get(entity)
        growth.append(f"entity `{entity}` added" + (f" in {where}" if where else ""))
    removal: list[str] = [f"intent `{i}` removed" for i in changes.intents_removed]
    removal += [f"entity `{e}` removed" for e in changes.entities_removed]
    if growth and removal:  # a rename is an addition plus a removal: name both
        reasons = [*growth, *removal]
    else:
        reasons = removal
    reasons += [f"entity role `{r}` added" for r in changes.roles_added]
    reasons += [f"entity role `{r}` removed" for r in changes.roles_removed]
    reasons += [f"entity group `{g}` added" for g in changes.groups_added]
    reasons += [f"entity group `{g}` removed" for g in changes.groups_removed]
    if changes.changed("nlu_labels") and not reasons and not growth:
        reasons.append("NLU labels changed (retrieval intents)")
    if changes.examples_removed:
        reasons.append(f"{changes.total_examples_removed} NLU example(s) removed or edited ({_per_intent(changes.examples_removed, '-')})")
    if changes.changed("config_nlu_without_epochs"):
        reasons.append("NLU pipeline config changed")
    elif changes.changed("config_nlu"):
        reasons.append("NLU epochs changed in config")
    if changes.changed("nlu_features"):
        reasons.append("regexes, lookup tables or synonyms changed")
    if changes.changed("retrieval_responses"):
        # the NLU model's ResponseSelector answers with them; Rasa retrains it too
        reasons.append("retrieval responses (`utter_<intent>/<key>`) changed: the ResponseSelector stores them")
    if reasons:
        if options.mode == "finetune" and not _blocks_finetune(changes, nlu=True):
            return FINETUNE, [*reasons, "finetune requested (--mode finetune)"]
        return FULL, reasons
    if growth:
        added = f"{changes.total_examples_added} NLU example(s) added ({_per_intent(changes.examples_added)})"
        return FINETUNE, [*growth, "the NLU model's label space grows (old weights kept, old examples replayed)", added]
    added = f"{changes.total_examples_added} NLU example(s) added to existing intents ({_per_intent(changes.examples_added)})"
    return FINETUNE, [added]


def _decide_core(changes: ChangeSummary, options: DecisionOptions) -> tuple[str, list[str]]:
    if not changes.changed(*_CORE_SECTIONS):
        return KEEP, []
    reasons: list[str] = []
    if changes.changed("config_core_without_epochs"):
        reasons.append("policy config changed")
    elif changes.changed("config_core"):
        reasons.append("policy epochs changed in config")
    if changes.stories_removed:
        reasons.append(f"{changes.stories_removed} story/rule(s) removed or edited")
    if reasons:
        if options.mode == "finetune" and not changes.changed("config_core_without_epochs"):
            return FINETUNE, [*reasons, "finetune requested (--mode finetune)"]
        return FULL, reasons
    return FINETUNE, [f"{changes.stories_added} story/rule(s) added with an unchanged domain"]


def _blocks_finetune(changes: ChangeSummary, *, nlu: bool) -> bool:
    """Changes that make finetuning impossible whatever the mode (removed labels, roles, groups, config)."""
    return bool(
        changes.intents_removed or changes.entities_removed
        or changes.roles_added or changes.roles_removed or changes.groups_added or changes.groups_removed
        or changes.changed("config_nlu_without_epochs")
    )


def _domain_reason(changes: ChangeSummary) -> str:
    if changes.domain_only_grew:
        gained = "; ".join(
            f"{key} {', '.join(names)}" for key, names in changes.domain_added.items() if key != "responses"
        )
        return f"domain gained {gained}"
    parts = []
    for key, names in changes.domain_added.items():
        if key != "responses":
            parts.append(f"{key} added: {', '.join(names)}")
    for key, names in changes.domain_removed.items():
        if key != "responses":
            parts.append(f"{key} removed: {', '.join(names)}")
    return "domain changed" + (f" ({'; '.join(parts)})" if parts else " (slot, action, form or intent settings)")


def _per_intent(counts: Mapping[str, int], sign: str = "+") -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{intent} {sign}{n}" for intent, n in items[:5])
    return shown + (f", … {len(items) - 5} more" if len(items) > 5 else "")
