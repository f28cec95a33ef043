"""Decide what to do with a change: skip, repackage, finetune or full retrain.

Pure: takes the previous model's fingerprint/metadata (or ``None``), the
current fingerprint and the options; returns a :class:`Decision` that carries
its reasons. Nothing here reads files, unpacks archives or imports TensorFlow.

The decision is made per model part (NLU, dialogue) as in Rasa, so a change
to stories never retrains the NLU model; the overall ``kind`` is the biggest
action any part needs.

The finetune rule -- which changes make finetuning a part impossible whatever
the mode -- is :func:`finetune_blockers`, used here on the fingerprint diff and
by the trainers' compatibility checks on a saved model (their safety net).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Mapping, Sequence

from pipeline import MODEL_FORMAT_VERSION
from pipeline.errors import UsageError
from pipeline.fingerprint import ChangeSummary, Fingerprint, Section


class DecisionKind(StrEnum):
    """What a CI run does overall; the value is what reports and outputs show."""

    SKIP = "skip"
    REPACKAGE = "repackage"
    FINETUNE = "finetune"
    FULL = "full"


class PartAction(StrEnum):
    """What happens to one model part (NLU or dialogue)."""

    KEEP = "keep"  # reuse the previous model's part as it is (or there is none to build)
    FINETUNE = "finetune"
    FULL = "full"


class Part(StrEnum):
    """The model parts, named as in the archive (``nlu/``, ``core/``)."""

    NLU = "nlu"
    CORE = "core"


class Mode(StrEnum):
    """``--mode``: how much the user lets the decision choose."""

    AUTO = "auto"
    FULL = "full"
    FINETUNE = "finetune"
    SKIP_CHECK = "skip-check"


# Short names, as imported across the code base (``from pipeline.decision import FINETUNE``).
KEEP, FINETUNE, FULL = PartAction.KEEP, PartAction.FINETUNE, PartAction.FULL
SKIP, REPACKAGE = DecisionKind.SKIP, DecisionKind.REPACKAGE
MODES = tuple(Mode)

#: Rasa's dry-run result bitmask.
CODE_CORE, CODE_NLU, CODE_RESPONSES, CODE_FORCED = 1, 2, 4, 8

#: Bounds of ``--epoch-fraction`` (the share of the configured epochs a finetune trains).
EPOCH_FRACTION_BOUNDS = "greater than 0 and at most 1"

_NLU_SECTIONS = (
    Section.CONFIG_NLU, Section.NLU_EXAMPLES, Section.NLU_LABELS, Section.NLU_FEATURES, Section.RETRIEVAL_RESPONSES,
)
_CORE_SECTIONS = (Section.CONFIG_CORE, Section.STORIES)


def check_epoch_fraction(value: object, *, name: str = "--epoch-fraction") -> float:
    """``value`` as an epoch fraction, or UsageError: a number greater than 0 and at most 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise UsageError(
            f"{name} must be a number {EPOCH_FRACTION_BOUNDS}, received {value!r}",
            hint="e.g. --epoch-fraction 0.2 finetunes for a fifth of the configured epochs",
        )
    return float(value)


@dataclass(frozen=True)
class DecisionOptions:
    """Inputs of a decision that come from the user or the environment."""

    mode: str = Mode.AUTO  # a Mode; plain strings are accepted and checked by decide()
    scheduled: bool = False
    max_finetunes: int = 5
    force: bool = False


@dataclass(frozen=True)
class Decision:
    """What to train and why: the overall ``kind`` and one action per model part."""

    kind: DecisionKind
    nlu: PartAction
    core: PartAction  # KEEP also when the project has no dialogue model
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
        """Whether any part is trained (finetuned or in full)."""
        return self.nlu != KEEP or self.core != KEEP

    @property
    def reason(self) -> str:
        """All reasons in one line."""
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form for reports (the values are the enums' strings)."""
        return {
            "decision": str(self.kind),
            "nlu": str(self.nlu),
            "core": str(self.core),
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "dry_run_code": self.code,
            "finetunes_in_a_row": self.finetunes_in_a_row,
            "changes": self.changes.to_dict() if self.changes else None,
        }


def kind_of(nlu: PartAction, core: PartAction) -> DecisionKind:
    """The overall kind of a run that trains ``nlu`` and ``core``: the biggest part action (skip: none)."""
    if FULL in (nlu, core):
        return DecisionKind.FULL
    if FINETUNE in (nlu, core):
        return DecisionKind.FINETUNE
    return DecisionKind.SKIP


def without_finetune(decision: Decision, reason: str) -> Decision:
    """``decision`` with every finetuned part trained in full instead, ``reason`` added (unchanged if none)."""
    if FINETUNE not in (decision.nlu, decision.core):
        return decision
    nlu = FULL if decision.nlu == FINETUNE else decision.nlu
    core = FULL if decision.core == FINETUNE else decision.core
    return replace(decision, kind=kind_of(nlu, core), nlu=nlu, core=core, reasons=(*decision.reasons, reason),
                   finetunes_in_a_row=0)


def decide(
    previous_fingerprint: Fingerprint | Mapping[str, Any] | None,
    previous_metadata: Mapping[str, Any] | None,
    changes: ChangeSummary | None,
    options: DecisionOptions = DecisionOptions(),
    *,
    has_core: bool = True,
    previous_problem: str | None = None,
) -> Decision:
    """Decide skip / repackage / finetune / full for each model part, with reasons."""
    try:
        mode = Mode(options.mode)
    except ValueError:
        raise ValueError(f"mode must be one of {tuple(str(m) for m in Mode)}, got {options.mode!r}") from None
    check_only = mode == Mode.SKIP_CHECK
    core_full = FULL if has_core else KEEP
    notes: tuple[str, ...] = ()
    if changes is not None and changes.changed(Section.TEST_DATA):
        notes = ("test data changed (used for testing only, not for training)",)
    previous_finetunes = int((previous_metadata or {}).get("finetunes_in_a_row", 0) or 0)

    def full(*reasons: str) -> Decision:
        return Decision(DecisionKind.FULL, FULL, core_full, tuple(reasons), check_only=check_only, changes=changes)

    def unchanged(kind: DecisionKind, reason: str, **extra: Any) -> Decision:
        return Decision(kind, KEEP, KEEP, (reason,), check_only=check_only, changes=changes, notes=notes, **extra)

    if previous_fingerprint is None or changes is None:
        return full(previous_problem or "no previous model in the store")
    previous_format = str(previous_fingerprint.get("model_format", "") or "")
    if previous_format != MODEL_FORMAT_VERSION:
        return full(
            f"previous model has model format {previous_format or 'unknown'}, this deltatrain writes {MODEL_FORMAT_VERSION}"
        )
    if mode == Mode.FULL or options.force:
        return full("full retrain requested (--mode full)" if mode == Mode.FULL else "training forced (--force)")
    if options.scheduled:
        return full("scheduled run: nightly full retrain")

    if changes.nothing_changed:
        if mode == Mode.FINETUNE:
            return unchanged(SKIP, "nothing changed since the previous model; nothing to finetune")
        return unchanged(SKIP, "nothing changed since the previous model", finetunes_in_a_row=previous_finetunes)

    nlu_action, nlu_reasons = _decide_nlu(changes, mode)
    core_action, core_reasons = _decide_core(changes, mode) if has_core else (KEEP, [])
    if not has_core and changes.changed(Section.DOMAIN_WITHOUT_RESPONSES):
        nlu_reasons = [_domain_reason(changes), *nlu_reasons]
    reasons = [*nlu_reasons, *core_reasons]

    finetuning = FINETUNE in (nlu_action, core_action)
    if finetuning and previous_finetunes >= options.max_finetunes and mode != Mode.FINETUNE:
        reasons.append(
            f"{previous_finetunes} finetunes in a row since the last full training (limit --max-finetunes {options.max_finetunes})"
        )
        nlu_action = FULL if nlu_action == FINETUNE else nlu_action
        core_action = FULL if core_action == FINETUNE else core_action

    responses_changed = changes.changed(Section.RESPONSES, Section.CONFIG_OTHER)
    if nlu_action == KEEP and core_action == KEEP:
        if responses_changed:
            what = "responses changed" if changes.changed(Section.RESPONSES) else "config recipe/assistant_id changed"
            return Decision(
                REPACKAGE, KEEP, KEEP, (f"only {what}: repackage the previous model without training",),
                repackage=True, check_only=check_only, changes=changes,
                finetunes_in_a_row=previous_finetunes, notes=notes,
            )
        return Decision(
            SKIP, KEEP, KEEP, tuple(reasons) or ("no change that affects the models",),
            check_only=check_only, changes=changes, finetunes_in_a_row=previous_finetunes, notes=notes,
        )
    kind = kind_of(nlu_action, core_action)
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
        finetunes_in_a_row=previous_finetunes + 1 if kind == DecisionKind.FINETUNE else 0,
        notes=notes,
    )


def finetune_blockers(
    changes: ChangeSummary, part: Part, *, details: Mapping[Section, Sequence[str]] | None = None
) -> tuple[str, ...]:
    """Why ``part`` cannot be finetuned whatever ``--mode`` says (empty: it can) -- the finetune rule.

    NLU: an intent or entity type removed (a rename names the added one too), any entity role or group
    added or removed, the NLU config changed beyond epochs. Dialogue: the domain changed beyond added
    intents and entities, the policy config changed beyond epochs. Added intents, entity types, examples
    and stories never block: the finetune grows the label and input spaces.

    ``details`` names a changed section's differences where the caller knows them better than the
    fingerprint does (the trainers' checks name each config option and domain item).
    """
    named = details or {}
    if part == Part.NLU:
        reasons = _label_blockers(changes)
        config = Section.CONFIG_NLU_WITHOUT_EPOCHS
        if changes.changed(config):
            reasons += named.get(config) or ["NLU pipeline config changed"]
        return tuple(reasons)
    reasons = []
    domain = Section.DOMAIN_WITHOUT_RESPONSES
    if changes.changed(domain) and not changes.domain_only_grew:
        reasons += named.get(domain) or [_domain_reason(changes)]
    config = Section.CONFIG_CORE_WITHOUT_EPOCHS
    if changes.changed(config):
        reasons += named.get(config) or ["policy config changed"]
    return tuple(reasons)


def _label_blockers(changes: ChangeSummary) -> list[str]:
    """The label changes a finetune cannot absorb: removals (with the additions of a rename), roles, groups."""
    removal = [f"intent `{i}` removed" for i in changes.intents_removed]
    removal += [f"entity `{e}` removed" for e in changes.entities_removed]
    reasons = [*_growth(changes), *removal] if removal else []  # a rename is an addition plus a removal
    reasons += [f"entity role `{r}` added" for r in changes.roles_added]
    reasons += [f"entity role `{r}` removed" for r in changes.roles_removed]
    reasons += [f"entity group `{g}` added" for g in changes.groups_added]
    reasons += [f"entity group `{g}` removed" for g in changes.groups_removed]
    return reasons


def _growth(changes: ChangeSummary) -> list[str]:
    """Added intents and entity types, with where each first appears."""
    growth: list[str] = []
    for what, names in (("intent", changes.intents_added), ("entity", changes.entities_added)):
        for name in names:
            where = changes.locations.get(name)
            growth.append(f"{what} `{name}` added" + (f" in {where}" if where else ""))
    return growth


def _decide_nlu(changes: ChangeSummary, mode: Mode) -> tuple[PartAction, list[str]]:
    if not changes.changed(*_NLU_SECTIONS):
        return KEEP, []
    blockers = list(finetune_blockers(changes, Part.NLU))
    # below: changes a finetune could absorb, but that --mode auto trains in full
    others: list[str] = []
    growth = _growth(changes)
    if changes.changed(Section.NLU_LABELS) and not growth and not _label_blockers(changes):
        others.append("NLU labels changed (retrieval intents)")
    if changes.examples_removed:
        others.append(f"{changes.total_examples_removed} NLU example(s) removed or edited ({_per_intent(changes.examples_removed, '-')})")
    if changes.changed(Section.CONFIG_NLU) and not changes.changed(Section.CONFIG_NLU_WITHOUT_EPOCHS):
        others.append("NLU epochs changed in config")
    if changes.changed(Section.NLU_FEATURES):
        others.append("regexes, lookup tables or synonyms changed")
    if changes.changed(Section.RETRIEVAL_RESPONSES):
        # the NLU model's ResponseSelector answers with them; Rasa retrains it too
        others.append("retrieval responses (`utter_<intent>/<key>`) changed: the ResponseSelector stores them")
    reasons = [*blockers, *others]
    if reasons:
        if mode == Mode.FINETUNE and not blockers:
            return FINETUNE, [*reasons, "finetune requested (--mode finetune)"]
        return FULL, reasons
    if growth:
        added = f"{changes.total_examples_added} NLU example(s) added ({_per_intent(changes.examples_added)})"
        return FINETUNE, [*growth, "the NLU model's label space grows (old weights kept, old examples replayed)", added]
    added = f"{changes.total_examples_added} NLU example(s) added to existing intents ({_per_intent(changes.examples_added)})"
    return FINETUNE, [added]


def _decide_core(changes: ChangeSummary, mode: Mode) -> tuple[PartAction, list[str]]:
    domain_changed = changes.changed(Section.DOMAIN_WITHOUT_RESPONSES)
    if not changes.changed(*_CORE_SECTIONS) and not domain_changed:
        return KEEP, []
    blockers = list(finetune_blockers(changes, Part.CORE))
    # new intents/entities only add input features: the dialogue model grows them
    growth = [f"{_domain_reason(changes)}: the dialogue model's input features grow"] if (
        domain_changed and changes.domain_only_grew) else []
    others: list[str] = []
    if changes.changed(Section.CONFIG_CORE) and not changes.changed(Section.CONFIG_CORE_WITHOUT_EPOCHS):
        others.append("policy epochs changed in config")
    if changes.stories_removed:
        others.append(f"{changes.stories_removed} story/rule(s) removed or edited")
    reasons = [*growth, *blockers, *others]
    if blockers:
        return FULL, reasons
    if others:
        if mode == Mode.FINETUNE:
            return FINETUNE, [*reasons, "finetune requested (--mode finetune)"]
        return FULL, reasons
    if changes.changed(*_CORE_SECTIONS):
        return FINETUNE, [*growth, f"{changes.stories_added} story/rule(s) added with an unchanged domain"]
    return FINETUNE, growth


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
