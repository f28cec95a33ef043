"""Pure checks over a loaded :class:`~pipeline.data.model.Project` (no I/O).

:func:`validate_project` returns every finding as a
:class:`~pipeline.errors.Problem` with the file and line it is about and a fix
hint. Findings that make the dialogue model impossible to train (a story, rule
or test story naming an intent, action, slot or form the domain does not
declare, or setting a slot to a value of the wrong type) are errors when the
project has both a domain and stories/rules; everything else is a warning.
A project without a domain is NLU-only: no domain checks run.

Problem codes (``Problem.code``), stable for callers and tests::

    unknown-intent     intent used in data or dialogue but not in the domain
    unused-intent      domain intent without a single NLU example
    unknown-entity     entity used in examples or stories but not in the domain
    unknown-role       entity role used but not declared on the entity
    unknown-group      entity group used but not declared on the entity
    duplicate-example  same example text under two different intents
    few-examples       intent with fewer than MIN_EXAMPLES_PER_INTENT examples
    unknown-action     dialogue step runs an action the domain does not know
    unknown-slot       slot_was_set / form names a slot the domain does not know
    unknown-form       active_loop names no form or action of the domain
    slot-value         slot_was_set value Rasa featurises as "not set" (a warning: a
                       categorical slot takes any value, unlisted ones count as ``__other__``)
    slot-mapping       a slot mapping names an entity, intent or form the domain lacks
    checkpoint         a story checkpoint that no other story block continues or starts
    rule-contradiction, rule-story-contradiction, incomplete-rule, rule-too-long:
                       Rasa's RulePolicy checks, see :mod:`pipeline.rule_check`
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from pipeline.data.model import (
    DEFAULT_ACTIONS,
    DEFAULT_INTENTS,
    REQUESTED_SLOT,
    RESTART_EVENT,
    ActionStep,
    ActiveLoopStep,
    CheckpointStep,
    EntityDef,
    NluData,
    OrStep,
    Project,
    SlotDef,
    SlotStep,
    Step,
    Story,
    UserStep,
)
from pipeline.errors import Location, Problem, prefix_path
from pipeline.rule_check import check_rules, rule_check_options
from pipeline.safe_output import CommandName, render_command

__all__ = [
    "DEFAULT_INTENTS",
    "MIN_EXAMPLES_PER_INTENT",
    "REQUESTED_SLOT",
    "validate_project",
    "has_errors",
    "render_annotation",
]

#: Fewer NLU examples than this for an intent is a warning.
MIN_EXAMPLES_PER_INTENT = 2
ANNOTATION_TITLE = "deltatrain"


def validate_project(project: Project) -> tuple[Problem, ...]:
    """Check a project's data for inconsistencies; errors first, then warnings."""
    problems: list[Problem] = []
    problems.extend(_check_examples(project.nlu))
    if project.has_domain:
        known = _Known.of(project)
        problems.extend(_check_nlu_against_domain(project, known))
        dialogue_severity = "error" if project.stories else "warning"
        for story in (*project.stories, *project.test_stories):
            problems.extend(_check_story(story, known, dialogue_severity))
        problems.extend(_check_forms(project, known))
        problems.extend(_check_slot_mappings(project, known))
        problems.extend(check_rules(project.domain, project.stories, rule_check_options(project.config)))
    problems.extend(_check_checkpoints(project.plain_stories))
    return tuple(sorted(problems, key=lambda p: not p.is_error))


def has_errors(problems: Iterable[Problem]) -> bool:
    """Whether any of the problems is an error (training must not start)."""
    return any(p.is_error for p in problems)


def render_annotation(problem: Problem, *, path_prefix: str = "", secrets: Iterable[str] = ()) -> str:
    """One GitHub Actions workflow command (``::error file=..,line=..::msg``) for a problem, its path seen
    from the repository root (``path_prefix``); escaped and redacted by :mod:`pipeline.safe_output`."""
    level = {"error": CommandName.ERROR, "warning": CommandName.WARNING}.get(problem.severity, CommandName.NOTICE)
    where = problem.location
    file = prefix_path(where.file, path_prefix) if where is not None and where.file else None
    line = where.line if where is not None and file else None
    properties: dict[str, str | int | None] = {
        "file": file, "line": line, "col": where.column if where is not None and line is not None else None,
        "title": ANNOTATION_TITLE,
    }
    message = problem.message + (f"\nfix: {problem.hint}" if problem.hint else "")
    return render_command(level, message, properties, secrets)


# ------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Known:
    """Names the domain declares, defaults included."""

    intents: frozenset[str]
    actions: frozenset[str]
    slots: Mapping[str, SlotDef]
    loops: frozenset[str]
    forms: frozenset[str]
    entities: Mapping[str, EntityDef]
    domain_file: str

    @classmethod
    def of(cls, project: Project) -> _Known:
        domain = project.domain
        actions = set(domain.action_names) | set(DEFAULT_ACTIONS)  # retrieval actions (utter_faq) included
        return cls(
            intents=frozenset((*domain.intent_names, *DEFAULT_INTENTS)),
            actions=frozenset(actions),
            slots={s.name: s for s in domain.slots},
            # Rasa accepts any action as an active loop (action_two_stage_fallback is a default loop)
            loops=frozenset(actions),
            forms=frozenset(domain.form_names),
            entities={e.name: e for e in domain.entities},
            domain_file=domain.location.file if domain.location else "the domain",
        )


def _where(location: Location | None) -> str:
    return f" ({location})" if location else ""


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return f"did you mean '{close[0]}'? Otherwise " if close else ""


def _leaf_steps(steps: Iterable[Step]) -> Iterator[Step]:
    """Steps with ``or`` alternatives flattened in place."""
    for step in steps:
        if isinstance(step, OrStep):
            yield from step.alternatives
        else:
            yield step


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split())


# ----------------------------------------------------------------------- NLU


def _check_examples(nlu: NluData) -> list[Problem]:
    problems: list[Problem] = []
    first_seen: dict[str, tuple[str, Location | None]] = {}
    reported: set[tuple[str, str, str]] = set()
    counts: dict[str, int] = {}
    first_location: dict[str, Location | None] = {}
    for example in nlu.examples:
        intent = example.full_intent
        counts[intent] = counts.get(intent, 0) + 1
        first_location.setdefault(intent, example.location)
        key = _normalise(example.text)
        if key not in first_seen:
            first_seen[key] = (intent, example.location)
            continue
        other, other_location = first_seen[key]
        if other == intent or (key, other, intent) in reported:
            continue
        reported.add((key, other, intent))
        problems.append(
            Problem(
                "warning",
                f"example '{example.text}' is under intent '{intent}' here and under intent "
                f"'{other}'{_where(other_location)}",
                example.location,
                "keep the example under one intent only; the classifier cannot learn two answers for one text",
                code="duplicate-example",
            )
        )
    for intent, count in counts.items():
        if count < MIN_EXAMPLES_PER_INTENT:
            problems.append(
                Problem(
                    "warning",
                    f"intent '{intent}' has only {count} example(s)",
                    first_location[intent],
                    f"add at least {MIN_EXAMPLES_PER_INTENT - count} more example(s); "
                    "intents with very few examples are rarely recognised",
                    code="few-examples",
                )
            )
    return problems


def _check_nlu_against_domain(project: Project, known: _Known) -> list[Problem]:
    problems: list[Problem] = []
    examples = project.nlu.examples
    first_use: dict[str, Location | None] = {}
    for example in examples:
        first_use.setdefault(example.intent, example.location)
    for intent, location in first_use.items():
        if intent not in known.intents:
            problems.append(
                Problem(
                    "warning",
                    f"intent '{intent}' has NLU examples but is not in the domain",
                    location,
                    f"{_did_you_mean(intent, known.intents)}add '- {intent}' under 'intents:' in {known.domain_file}",
                    code="unknown-intent",
                )
            )
    used_in_nlu = set(first_use)
    for declared in project.domain.intents:
        if declared.name not in used_in_nlu and declared.name not in DEFAULT_INTENTS:
            problems.append(
                Problem(
                    "warning",
                    f"intent '{declared.name}' is in the domain but has no NLU examples",
                    declared.location,
                    f"add examples for '{declared.name}' to the NLU data, or remove it from the domain",
                    code="unused-intent",
                )
            )
    spans = (
        (span.entity, span.role, span.group, example.location)
        for example in examples
        for span in example.entities
    )
    problems.extend(_check_entities(spans, known, "examples"))
    return problems


def _check_entities(
    uses: Iterable[tuple[str, str | None, str | None, Location | None]], known: _Known, where: str
) -> list[Problem]:
    """One warning per undeclared entity, role or group, at its first use."""
    problems: list[Problem] = []
    seen: set[tuple[str, str, str]] = set()
    for entity, role, group, location in uses:
        definition = known.entities.get(entity)
        if definition is None:
            if ("entity", entity, "") in seen:
                continue
            seen.add(("entity", entity, ""))
            problems.append(
                Problem(
                    "warning",
                    f"entity '{entity}' is used in {where} but is not in the domain",
                    location,
                    f"{_did_you_mean(entity, known.entities)}add '- {entity}' under 'entities:' in {known.domain_file}",
                    code="unknown-entity",
                )
            )
            continue
        for kind, value, declared in (("role", role, definition.roles), ("group", group, definition.groups)):
            if value is None or value in declared or (kind, entity, value) in seen:
                continue
            seen.add((kind, entity, value))
            problems.append(
                Problem(
                    "warning",
                    f"{kind} '{value}' of entity '{entity}' is used in {where} but not declared in the domain",
                    location,
                    f"add '{value}' to '{kind}s:' of entity '{entity}' in {known.domain_file}",
                    code=f"unknown-{kind}",
                )
            )
    return problems


# ------------------------------------------------------------------ dialogue


def _story_label(story: Story) -> str:
    return {"rule": "rule", "test": "test story"}.get(story.kind, "story") + f" '{story.name}'"


def _check_story(story: Story, known: _Known, severity: str) -> list[Problem]:
    """Names and slot values of one story, rule or test story against the domain."""
    problems: list[Problem] = []
    label = _story_label(story)
    reported: set[tuple[str, str]] = set()
    reported_values: set[tuple[str, str]] = set()

    def add(code: str, name: str, message: str, location: Location | None, hint: str) -> None:
        if (code, name) in reported:
            return
        reported.add((code, name))
        problems.append(Problem(severity, message, location or story.location, hint, code=code))

    entity_uses: list[tuple[str, str | None, str | None, Location | None]] = []
    for step in _leaf_steps((*story.condition, *story.steps)):
        if isinstance(step, UserStep):
            intent = step.intent.split("/", 1)[0] if step.intent else None
            if intent and intent not in known.intents:
                add(
                    "unknown-intent",
                    intent,
                    f"intent '{intent}' in {label} is not in the domain",
                    step.location,
                    f"{_did_you_mean(intent, known.intents)}add '- {intent}' under 'intents:' in {known.domain_file}",
                )
            location = step.location or story.location
            entity_uses.extend((e.entity, e.role, e.group, location) for e in step.entities)
        elif isinstance(step, ActionStep):
            if not step.is_text and step.name not in known.actions and step.name != RESTART_EVENT:
                add(
                    "unknown-action",
                    step.name,
                    f"action '{step.name}' in {label} is not in the domain",
                    step.location,
                    _action_hint(step.name, known),
                )
        elif isinstance(step, SlotStep):
            for name, value in step.slots:
                if name == REQUESTED_SLOT:
                    continue
                slot = known.slots.get(name)
                if slot is None:
                    add(
                        "unknown-slot",
                        name,
                        f"slot '{name}' set in {label} is not in the domain",
                        step.location,
                        f"{_did_you_mean(name, known.slots)}add slot '{name}' with its type under 'slots:' "
                        f"in {known.domain_file}",
                    )
                    continue
                wrong = _slot_value_problem(slot, value)
                if wrong and (name, str(value)) not in reported_values:  # Rasa trains; the value reads as unset
                    reported_values.add((name, str(value)))
                    problems.append(
                        Problem(
                            "warning",
                            f"slot '{name}' in {label} is set to {value!r}, but {wrong}; "
                            "it counts as not set",
                            step.location or story.location,
                            _slot_value_hint(slot),
                            code="slot-value",
                        )
                    )
        elif isinstance(step, ActiveLoopStep):
            if step.name is not None and step.name not in known.loops:
                add(
                    "unknown-form",
                    step.name,
                    f"active_loop '{step.name}' in {label} is not a form or action in the domain",
                    step.location,
                    f"{_did_you_mean(step.name, known.loops)}add form '{step.name}' with its required_slots "
                    f"under 'forms:' in {known.domain_file}",
                )
    problems.extend(_check_entities(entity_uses, known, label))
    return problems


def _action_hint(name: str, known: _Known) -> str:
    guess = _did_you_mean(name, known.actions)
    if name.startswith("utter_"):
        return f"{guess}add a response '{name}' under 'responses:' in {known.domain_file}"
    return f"{guess}add '- {name}' under 'actions:' in {known.domain_file}"


def _slot_value_problem(slot: SlotDef, value: Any) -> str | None:
    """Why ``value`` does not fit ``slot`` (None: it fits), judged as Rasa featurises it.

    ``None`` always fits (the slot is reset). A bool slot takes booleans,
    numbers and the texts ``true``/``false`` (Rasa's ``bool_from_any``), a
    float slot anything ``float()`` reads; other values are featurised as if
    the slot were unset. A categorical slot takes any value: values not in
    ``values:`` are featurised as ``__other__``.
    """
    if value is None:
        return None
    if slot.type == "bool" and not _rasa_bool(value):
        return "it is a bool slot (true or false)"
    if slot.type == "float":
        try:
            float(value)
        except (TypeError, ValueError):
            return "it is a float slot (a number)"
    return None


def _rasa_bool(value: Any) -> bool:
    """Whether Rasa's ``bool_from_any`` reads ``value``."""
    if isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, str) and (value.isnumeric() or value.strip().lower() in ("true", "false"))


def _slot_value_hint(slot: SlotDef) -> str:
    if slot.type == "bool":
        return "use true or false (unquoted) or null; Rasa reads other values as if the slot were not set"
    return "use a number (unquoted) or null; Rasa reads other values as if the slot were not set"


def _check_forms(project: Project, known: _Known) -> list[Problem]:
    """Every slot a form requires is a domain slot (Rasa's validator fails otherwise)."""
    problems = []
    for form in project.domain.forms:
        for index, slot in enumerate(form.required_slots):
            if slot not in known.slots:
                problems.append(
                    Problem(
                        "error",
                        f"form '{form.name}' requires slot '{slot}', which is not in the domain",
                        form.slot_location(index),
                        f"{_did_you_mean(slot, known.slots)}add slot '{slot}' with its type and mappings under "
                        f"'slots:' in {known.domain_file}",
                        code="unknown-slot",
                    )
                )
    return problems


def _check_slot_mappings(project: Project, known: _Known) -> list[Problem]:
    """Slot mappings against the domain, with Rasa's severities.

    A ``from_entity`` mapping of an undeclared entity and a ``from_intent``
    mapping of an undeclared intent are skipped with a warning when Rasa runs
    the assistant; a mapping condition naming a form that does not exist, or
    a form that does not require the slot, fails Rasa's validator.
    """
    problems: list[Problem] = []
    forms = {form.name: form for form in project.domain.forms}
    for slot in project.domain.slots:
        for index, mapping in enumerate(slot.mappings):
            location = slot.mapping_location(index)
            kind = mapping.get("type")
            entity = mapping.get("entity")
            if kind == "from_entity" and entity is not None and str(entity) not in known.entities:
                problems.append(
                    Problem(
                        "warning",
                        f"slot '{slot.name}' is mapped from entity '{entity}', which is not in the domain; "
                        "the mapping never fills the slot",
                        location,
                        f"{_did_you_mean(str(entity), known.entities)}add '- {entity}' under 'entities:' in "
                        f"{known.domain_file}",
                        code="slot-mapping",
                    )
                )
            intents = mapping.get("intent")
            if kind == "from_intent" and intents is not None:
                for intent in intents if isinstance(intents, tuple) else (intents,):
                    if intent and str(intent) not in known.intents:
                        problems.append(
                            Problem(
                                "warning",
                                f"slot '{slot.name}' is mapped from intent '{intent}', which is not in the domain; "
                                "the mapping never fills the slot",
                                location,
                                f"{_did_you_mean(str(intent), known.intents)}add '- {intent}' under 'intents:' in "
                                f"{known.domain_file}",
                                code="slot-mapping",
                            )
                        )
            conditions = mapping.get("conditions")
            for condition in conditions if isinstance(conditions, tuple) else ():
                loop = condition.get("active_loop") if isinstance(condition, Mapping) else None
                if not loop:
                    continue
                if loop not in forms:
                    problems.append(
                        Problem(
                            "error",
                            f"slot '{slot.name}' has a mapping condition for form '{loop}', which is not in the domain",
                            location,
                            f"{_did_you_mean(str(loop), forms)}add form '{loop}' under 'forms:' in "
                            f"{known.domain_file}, or fix the condition's active_loop",
                            code="slot-mapping",
                        )
                    )
                elif (
                    forms[loop].required_slots
                    and slot.name not in forms[loop].required_slots
                    and kind != "from_trigger_intent"
                ):
                    problems.append(
                        Problem(
                            "error",
                            f"slot '{slot.name}' has a mapping condition for form '{loop}', but the form does not "
                            "require it",
                            location,
                            f"add '{slot.name}' to 'required_slots' of form '{loop}' in {known.domain_file}",
                            code="slot-mapping",
                        )
                    )
    return problems


def _check_checkpoints(stories: Sequence[Story]) -> list[Problem]:
    """Checkpoints that no other block continues (end) or leads to (start), warned as Rasa does."""
    starts: dict[str, list[tuple[Story, CheckpointStep]]] = {}
    ends: dict[str, list[tuple[Story, CheckpointStep]]] = {}
    for story in stories:
        leading = True
        for index, step in enumerate(story.steps):
            if isinstance(step, CheckpointStep):
                (starts if leading else ends).setdefault(step.name, []).append((story, step))
                if not leading and any(not isinstance(s, CheckpointStep) for s in story.steps[index + 1 :]):
                    # in the middle of a story: Rasa ends one block there and starts the next with it
                    starts.setdefault(step.name, []).append((story, step))
            else:
                leading = False
    problems: list[Problem] = []
    for name, uses in ends.items():
        if name not in starts:
            for story, step in uses:
                problems.append(
                    Problem(
                        "warning",
                        f"checkpoint '{name}' ends {_story_label(story)} but no story starts with it; "
                        "the conversation is not continued there",
                        step.location or story.location,
                        f"add a story that starts with '- checkpoint: {name}', or remove the checkpoint",
                        code="checkpoint",
                    )
                )
    for name, uses in starts.items():
        if name not in ends:
            for story, step in uses:
                problems.append(
                    Problem(
                        "warning",
                        f"checkpoint '{name}' starts {_story_label(story)} but no story ends with it; "
                        "this story is never reached",
                        step.location or story.location,
                        f"end another story with '- checkpoint: {name}', or remove the checkpoint",
                        code="checkpoint",
                    )
                )
    return problems

