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
    unknown-form       active_loop names a form the domain does not know
    slot-value         slot_was_set value does not fit the slot's type
    rule-contradiction, rule-story-contradiction, incomplete-rule, rule-too-long:
                       Rasa's RulePolicy checks, see :mod:`pipeline.rule_check`
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from pipeline.data.model import (
    DEFAULT_ACTIONS,
    ActionStep,
    ActiveLoopStep,
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
from pipeline.errors import Location, Problem
from pipeline.rule_check import check_rules, rule_check_options

__all__ = [
    "DEFAULT_INTENTS",
    "MIN_EXAMPLES_PER_INTENT",
    "REQUESTED_SLOT",
    "validate_project",
    "has_errors",
    "render_annotation",
]

#: Rasa's built-in intents, known even when the domain does not list them.
DEFAULT_INTENTS = ("nlu_fallback", "out_of_scope", "restart", "back", "session_start")
#: The slot a form sets to the slot it asks for next; always known.
REQUESTED_SLOT = "requested_slot"
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
        problems.extend(check_rules(project.domain, project.stories, rule_check_options(project.config)))
    return tuple(sorted(problems, key=lambda p: not p.is_error))


def has_errors(problems: Iterable[Problem]) -> bool:
    """Whether any of the problems is an error (training must not start)."""
    return any(p.is_error for p in problems)


def render_annotation(problem: Problem) -> str:
    """One GitHub Actions workflow command (``::error file=..,line=..::msg``) for a problem."""
    level = problem.severity if problem.severity in ("error", "warning") else "notice"
    props: list[str] = []
    if problem.location is not None:
        props.append(f"file={_escape_property(problem.location.file)}")
        if problem.location.line is not None:
            props.append(f"line={problem.location.line}")
            if problem.location.column is not None:
                props.append(f"col={problem.location.column}")
    props.append(f"title={_escape_property(ANNOTATION_TITLE)}")
    message = problem.message
    if problem.hint:
        message += f"\nfix: {problem.hint}"
    return f"::{level} {','.join(props)}::{_escape_data(message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


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
        actions = set(domain.action_names) | set(DEFAULT_ACTIONS)
        # Retrieval responses ``utter_faq/ask_name`` make ``utter_faq`` an action.
        actions |= {name.split("/", 1)[0] for name in domain.responses if "/" in name}
        return cls(
            intents=frozenset((*domain.intent_names, *DEFAULT_INTENTS)),
            actions=frozenset(actions),
            slots={s.name: s for s in domain.slots},
            loops=frozenset((*domain.form_names, *domain.actions)),
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


def _is_e2e_text(action: str) -> bool:
    return " " in action.strip()


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
            if not _is_e2e_text(step.name) and step.name not in known.actions:
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
                if wrong:
                    add(
                        "slot-value",
                        f"{name}={value!r}",
                        f"slot '{name}' in {label} is set to {value!r}, but {wrong}",
                        step.location,
                        _slot_value_hint(slot),
                    )
        elif isinstance(step, ActiveLoopStep):
            if step.name is not None and step.name not in known.loops:
                add(
                    "unknown-form",
                    step.name,
                    f"active_loop '{step.name}' in {label} is not a form in the domain",
                    step.location,
                    f"{_did_you_mean(step.name, known.forms)}add form '{step.name}' with its required_slots "
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
    """Why ``value`` does not fit ``slot`` (None: it fits).

    ``None`` always fits (the slot is reset). A bare slot name in
    ``slot_was_set`` reads as ``true`` and cannot be told apart from an explicit
    ``true``, so ``true`` is accepted for float and categorical slots too.
    """
    if value is None or value is True:
        return None
    if slot.type == "bool" and not isinstance(value, bool):
        return "it is a bool slot (true or false)"
    if slot.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return "it is a float slot (a number)"
    if slot.type == "categorical" and str(value).lower() not in slot.values:
        return f"it is a categorical slot with values {', '.join(slot.values)}"
    return None


def _slot_value_hint(slot: SlotDef) -> str:
    if slot.type == "categorical":
        return f"use one of {', '.join(slot.values)} (or null), or add the value to 'values:' of slot '{slot.name}'"
    if slot.type == "bool":
        return "use true or false (unquoted) or null"
    return "use a number (unquoted) or null"


def _check_forms(project: Project, known: _Known) -> list[Problem]:
    problems = []
    for form in project.domain.forms:
        for slot in form.required_slots:
            if slot not in known.slots:
                problems.append(
                    Problem(
                        "warning",
                        f"form '{form.name}' requires slot '{slot}', which is not in the domain",
                        form.location,
                        f"add slot '{slot}' with its type and mappings under 'slots:' in {known.domain_file}",
                        code="unknown-slot",
                    )
                )
    return problems
