"""Readers from parsed Rasa YAML (2.0 and 3.x formats) into the data model.

Each reader takes the parsed document of one file and a :class:`Collector`
that gathers every problem found (with file and line) instead of stopping at
the first one. Files are told apart by their top-level keys, as Rasa does.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable

from pipeline.data.annotations import (
    AnnotationError,
    find_ignored_keys,
    find_unclosed_annotation,
    parse_annotated_text,
)
from pipeline.data.model import (
    SLOT_TYPES,
    ActionStep,
    ActiveLoopStep,
    CheckpointStep,
    Domain,
    EntityDef,
    EntityValue,
    FormDef,
    IntentDef,
    LookupTable,
    NluData,
    NluExample,
    OrStep,
    RegexFeature,
    SlotDef,
    SlotStep,
    Step,
    Story,
    Synonym,
    UserStep,
    freeze,
)
from pipeline.data.yamlio import YMap, YSeq
from pipeline.errors import Location, Problem

SUPPORTED_VERSIONS = ("2.0", "3.0", "3.1")
TRAINING_KEYS = ("nlu", "stories", "rules")
#: Every top-level key a training data file may have.
TRAINING_FILE_KEYS = ("version", *TRAINING_KEYS, "responses")
DOMAIN_KEYS = (
    "intents",
    "entities",
    "slots",
    "responses",
    "actions",
    "forms",
    "session_config",
    "e2e_actions",
    "templates",
)


@dataclass
class Collector:
    """Gathers problems for one file; ``error``/``warning`` add one with its line."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def at(self, line: int | None, column: int | None = None) -> Location:
        return Location(self.file, line, column)

    def error(self, message: str, line: int | None, hint: str | None = None, column: int | None = None) -> None:
        self.problems.append(Problem("error", message, self.at(line, column), hint, code="schema"))

    def warning(self, message: str, line: int | None, hint: str | None = None) -> None:
        self.problems.append(Problem("warning", message, self.at(line), hint, code="schema"))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return f"the text '{value}'"


def check_version(doc: YMap, out: Collector) -> bool:
    """Whether a file's ``version`` lets it be read, as in Rasa 3.6 (warnings, never errors).

    A version newer than 3.1 is skipped with a warning (Rasa reads such a file
    as empty); a version that is not a number is read as 3.1 with a warning.
    """
    if "version" not in doc or not doc["version"]:
        return True
    version = str(doc["version"]).strip().strip("\"'")
    parsed = _parse_version(version)
    if parsed is None:
        out.warning(
            f"training data format version '{version}' is not a version number; the file is read as version 3.1",
            doc.key_line("version"),
            'write the version as a quoted number, e.g. version: "3.1"',
        )
        return True
    if parsed > _parse_version(SUPPORTED_VERSIONS[-1]):  # type: ignore[operator]
        out.warning(
            f"training data format version '{version}' is newer than {SUPPORTED_VERSIONS[-1]}; "
            "the file is skipped (Rasa 3.6 skips it too)",
            doc.key_line("version"),
            f'use one of {", ".join(SUPPORTED_VERSIONS)} (e.g. version: "3.1")',
        )
        return False
    return True


def _parse_version(text: str) -> tuple[int, ...] | None:
    parts = text.split(".")
    if not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def is_rasa3_document(doc: YMap) -> bool:
    """Whether a file declares a Rasa 3 format version (stricter domain rules apply in Rasa)."""
    parsed = _parse_version(str(doc.get("version", "")).strip().strip("\"'"))
    return parsed is not None and parsed >= (3,)


def _text(value: Any, what: str, line: int, out: Collector, hint: str | None = None) -> str | None:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        out.error(f"{what} must be a text, got {_kind(value)}", line, hint)
        return None
    return str(value)


# ----------------------------------------------------------------------------- NLU


def _example_lines(item: YMap, out: Collector, what: str) -> list[tuple[str, int]]:
    """The ``examples: |`` list of an NLU block as (text, line) pairs."""
    if "examples" not in item or item["examples"] in (None, ""):
        out.warning(f"{what} has no 'examples' and is skipped", item.line,
                    "add an 'examples: |' block with one '- example' per line")
        return []
    raw = item["examples"]
    base = item.value_line("examples")
    literal = item.value_style("examples") in ("|", ">")
    if isinstance(raw, list):  # list of {text: ..., metadata: ...}, as Rasa's NLU schema allows
        result = []
        for index, entry in enumerate(raw):
            line = raw.item_line(index) if isinstance(raw, YSeq) else base
            if not isinstance(entry, dict):
                out.error(
                    f"'examples' of {what} is a YAML list, so each example must be a mapping with 'text:', "
                    f"got {_kind(entry)}",
                    line,
                    "write 'examples: |' with one '- example' per line below it (a block text, note the '|'), "
                    "or '- text: example' for each list item",
                )
                continue
            text = entry.get("text")
            if not isinstance(text, str) or not text.strip():
                out.error(f"example {index + 1} of {what} must have a 'text', got {_kind(text)}", line,
                          "write '- text: example' for each list item")
                continue
            result.append((text.strip(), line))
        return result
    if not isinstance(raw, str):
        out.error(
            f"'examples' of {what} must be a block of '- ' lines, got {_kind(raw)}",
            item.value_line("examples"),
            "write 'examples: |' and put one '- example' per line below it",
        )
        return []
    result = []
    for offset, line_text in enumerate(raw.splitlines()):
        line = base + offset + (1 if literal else 0)
        stripped = line_text.strip()
        if not stripped:
            continue
        if not stripped.startswith("-"):
            out.warning(
                f"example line in {what} does not start with '- ' and is skipped: '{stripped[:40]}'",
                line,
                "start every example with '- ' (dash and space)",
            )
            continue
        example = stripped[1:].strip()
        if len(example) >= 2 and example[0] == example[-1] and example[0] in "\"'":
            example = example[1:-1]
        if example:
            result.append((example, line))
    return result


def read_nlu(doc: YMap, out: Collector, read_side_file: Callable[[str], str | None]) -> NluData:
    """Read the ``nlu:`` section of a training data file."""
    block = doc["nlu"]
    if block is None:
        return NluData()
    if not isinstance(block, list):
        out.error(f"'nlu' must be a list of intent/synonym/regex/lookup blocks, got {_kind(block)}", doc.key_line("nlu"))
        return NluData()
    examples: list[NluExample] = []
    synonyms: list[Synonym] = []
    regexes: list[RegexFeature] = []
    lookups: list[LookupTable] = []
    for index, item in enumerate(block):
        line = block.item_line(index) if isinstance(block, YSeq) else doc.line
        if not isinstance(item, YMap):
            out.error(
                f"each 'nlu' entry must be a mapping (intent:, synonym:, regex: or lookup:), got {_kind(item)}",
                line,
            )
            continue
        if "intent" in item:
            name = _text(item["intent"], "intent name", item.key_line("intent"), out)
            if name is None:
                continue
            base, _, key = name.partition("/")
            what = f"intent '{name}'"
            for text, ex_line in _example_lines(item, out, what):
                try:
                    plain, spans = parse_annotated_text(text)
                except AnnotationError as exc:
                    out.error(exc.message, ex_line, exc.hint, column=None)
                    continue
                _warn_unclosed_annotation(text, ex_line, out)
                examples.append(
                    NluExample(plain, base.strip(), spans, key.strip() or None, out.at(ex_line))
                )
        elif "synonym" in item:
            value = _text(item["synonym"], "synonym value", item.key_line("synonym"), out)
            if value is not None:
                texts = tuple(t for t, _ in _example_lines(item, out, f"synonym '{value}'"))
                synonyms.append(Synonym(value, texts, out.at(item.line)))
        elif "regex" in item:
            name = _text(item["regex"], "regex name", item.key_line("regex"), out)
            if name is not None:
                patterns = []
                for pattern, p_line in _example_lines(item, out, f"regex '{name}'"):
                    if _regex_ok(pattern, p_line, out):
                        patterns.append(pattern)
                regexes.append(RegexFeature(name, tuple(patterns), out.at(item.line)))
        elif "lookup" in item:
            name = _text(item["lookup"], "lookup name", item.key_line("lookup"), out)
            if name is not None:
                lookups.append(LookupTable(name, _lookup_elements(item, name, out, read_side_file), out.at(item.line)))
        else:
            keys = ", ".join(str(k) for k in item.keys())
            out.error(
                f"unknown nlu entry with keys {keys}",
                item.line,
                "each entry starts with one of: intent, synonym, regex, lookup",
            )
    return NluData(tuple(examples), tuple(synonyms), tuple(regexes), tuple(lookups))


def _warn_unclosed_annotation(text: str, line: int, out: Collector) -> None:
    ignored = find_ignored_keys(text)
    if ignored:
        out.warning(
            f"entity annotation key(s) {', '.join(ignored)} are ignored",
            line,
            'an annotation may hold only "entity", "value", "role" and "group"',
        )
    fragment = find_unclosed_annotation(text)
    if fragment is not None:
        out.warning(
            f"unbalanced entity annotation '{fragment}' is read as plain text (no entity)",
            line,
            "close the annotation: [text](entity), [text]{\"entity\": \"type\"} or [text][{...}]",
        )


def _regex_ok(pattern: str, line: int, out: Collector) -> bool:
    import re

    try:
        re.compile(pattern)
    except re.error as exc:
        out.error(f"invalid regular expression '{pattern}': {exc}", line, "fix or escape the pattern")
        return False
    return True


def _lookup_elements(
    item: YMap, name: str, out: Collector, read_side_file: Callable[[str], str | None]
) -> tuple[str, ...]:
    raw = item.get("examples", item.get("elements"))
    if isinstance(raw, str) and not raw.lstrip().startswith("-") and raw.strip().endswith(".txt"):
        path = raw.strip()
        content = read_side_file(path)
        if content is None:
            out.error(f"lookup file '{path}' of lookup '{name}' not found", item.value_line("examples"))
            return ()
        return tuple(line.strip() for line in content.splitlines() if line.strip())
    return tuple(t for t, _ in _example_lines(item, out, f"lookup '{name}'"))


# ------------------------------------------------------------------ stories/rules


def read_stories(doc: YMap, key: str, out: Collector, *, kind: str) -> list[Story]:
    """Read the ``stories:`` or ``rules:`` section of a file."""
    block = doc[key]
    if block is None:
        return []
    if not isinstance(block, list):
        out.error(f"'{key}' must be a list, got {_kind(block)}", doc.key_line(key))
        return []
    name_key = "rule" if key == "rules" else "story"
    stories = []
    for index, item in enumerate(block):
        line = block.item_line(index) if isinstance(block, YSeq) else doc.line
        if not isinstance(item, YMap) or name_key not in item:
            out.error(f"each entry of '{key}' must be a mapping starting with '{name_key}: <name>'", line)
            continue
        name = str(item[name_key])
        steps_raw = item.get("steps")
        if steps_raw is None or steps_raw == []:
            out.warning(f"{name_key} '{name}' has no steps and is skipped", item.line,
                        "add 'steps:' with the turns of the conversation")
            continue
        if not isinstance(steps_raw, list):
            out.error(f"'steps' of {name_key} '{name}' must be a list, got {_kind(steps_raw)}", item.key_line("steps"),
                      "write each turn as '- intent: ...', '- action: ...' under 'steps:'")
            continue
        allowed = RULE_STEP_KEYS if key == "rules" else STORY_STEP_KEYS
        steps = _read_steps(steps_raw, out, f"{name_key} '{name}'", allowed)
        condition: tuple[Step, ...] = ()
        if "condition" in item:
            if isinstance(item["condition"], list):
                condition = tuple(
                    _read_steps(item["condition"], out, f"condition of rule '{name}'", CONDITION_STEP_KEYS)
                )
            else:
                out.error(f"'condition' of rule '{name}' must be a list", item.key_line("condition"))
        flags = {}
        for flag, default in (("conversation_start", False), ("wait_for_user_input", True)):
            value = item.get(flag, default)
            if not isinstance(value, bool):
                out.error(f"'{flag}' of {name_key} '{name}' must be true or false, got {_kind(value)}", item.key_line(flag))
                value = default
            flags[flag] = value
        stories.append(
            Story(
                name=name,
                steps=tuple(steps),
                kind=kind if kind == "test" else ("rule" if key == "rules" else "story"),
                condition=condition,
                conversation_start=flags["conversation_start"],
                wait_for_user_input=flags["wait_for_user_input"],
                location=out.at(item.line),
            )
        )
    return stories


#: Step keys Rasa's YAML schema allows in stories, rules and rule conditions.
STORY_STEP_KEYS = ("intent", "user", "action", "bot", "slot_was_set", "active_loop", "checkpoint", "or")
RULE_STEP_KEYS = ("intent", "user", "action", "slot_was_set", "active_loop", "or")
CONDITION_STEP_KEYS = ("slot_was_set", "active_loop")


def _read_steps(raw: list[Any], out: Collector, what: str, allowed: tuple[str, ...] = STORY_STEP_KEYS) -> list[Step]:
    steps: list[Step] = []
    for index, step in enumerate(raw):
        line = raw.item_line(index) if isinstance(raw, YSeq) else 0
        if not isinstance(step, YMap):
            out.error(f"step {index + 1} of {what} must be a mapping, got {_kind(step)}", line)
            continue
        kind = next((k for k in STORY_STEP_KEYS if k in step), None)
        if kind is not None and kind not in allowed:
            out.error(
                f"a '{kind}' step is not allowed in {what}",
                step.line,
                f"steps here may only be: {', '.join(allowed)}"
                + ("; checkpoints and bot texts belong in stories" if kind in ("checkpoint", "bot") else ""),
            )
            continue
        parsed = _read_step(step, out, what)
        if parsed is not None:
            steps.append(parsed)
    return steps


def _read_step(step: YMap, out: Collector, what: str) -> Step | None:
    loc = out.at(step.line)
    if "intent" in step or "user" in step:
        return _read_user_step(step, out, what)
    if "action" in step:
        name = _text(step["action"], "action name", step.key_line("action"), out)
        return ActionStep(name, loc) if name else None
    if "bot" in step:
        name = _text(step["bot"], "bot text", step.key_line("bot"), out)
        return ActionStep(name, loc, is_text=True) if name else None
    if "slot_was_set" in step:
        return _read_slot_step(step["slot_was_set"], step, out, what)
    if "active_loop" in step:
        value = step["active_loop"]
        return ActiveLoopStep(None if value in (None, "null") else str(value), loc)
    if "checkpoint" in step:
        return CheckpointStep(str(step["checkpoint"]), loc)
    if "or" in step:
        alternatives = []
        raw = step["or"]
        if not isinstance(raw, list):
            out.error(f"'or' in {what} must be a list of steps", step.key_line("or"))
            return None
        for alt in _read_steps(raw, out, what):
            if isinstance(alt, (UserStep, SlotStep)):
                alternatives.append(alt)
            else:
                out.error(f"'or' in {what} may only hold intents or slot_was_set", step.line)
        return OrStep(tuple(alternatives), loc)
    keys = ", ".join(str(k) for k in step.keys())
    out.error(
        f"unknown step in {what} with key(s) {keys}",
        step.line,
        "a step is one of: intent, user, action, bot, slot_was_set, active_loop, checkpoint, or",
    )
    return None


def _read_user_step(step: YMap, out: Collector, what: str) -> UserStep | None:
    intent = step.get("intent")
    if intent is not None:
        intent = _text(intent, "intent name", step.key_line("intent"), out)
    if intent and intent.startswith("/"):
        # Rasa 3.6 warns "User intent '/x' starts with '/'. This is not required." and drops one '/'
        out.warning(f"User intent '{intent}' starts with '/'. This is not required.", step.key_line("intent"),
                    f"write '- intent: {intent[1:]}'")
        intent = intent[1:]
    text = step.get("user")
    entities: list[EntityValue] = []
    if text is not None:
        if not isinstance(text, str):
            out.error(f"'user' in {what} must be a text, got {_kind(text)}", step.key_line("user"))
            return None
        try:
            plain, spans = parse_annotated_text(text)
        except AnnotationError as exc:
            out.error(exc.message, step.key_line("user"), exc.hint)
            return None
        _warn_unclosed_annotation(text, step.key_line("user"), out)
        text = plain.strip()  # ``user: |`` blocks end with a newline; Rasa strips it too
        entities.extend(EntityValue(s.entity, s.value, s.role, s.group) for s in spans)
    raw_entities = step.get("entities") or []
    if not isinstance(raw_entities, list):
        out.error(f"'entities' in {what} must be a list, got {_kind(raw_entities)}", step.key_line("entities"))
        raw_entities = []
    for entity in raw_entities:
        if isinstance(entity, str):
            entities.append(EntityValue(entity))
        elif isinstance(entity, dict) and "entity" in entity:
            entities.append(
                EntityValue(str(entity["entity"]), entity.get("value"), _opt_str(entity.get("role")),
                            _opt_str(entity.get("group")))
            )
        elif isinstance(entity, dict) and len(set(entity) - {"role", "group"}) == 1:
            # Rasa 3.x: ``- city: Berlin`` with optional ``role:`` / ``group:`` beside it
            (name,) = set(entity) - {"role", "group"}
            entities.append(
                EntityValue(str(name), entity[name], _opt_str(entity.get("role")), _opt_str(entity.get("group")))
            )
        else:
            out.error(f"entity {entity!r} in {what} is not understood", step.key_line("entities"),
                      "write '- entity_name: value' or '- entity: name' with 'value', 'role', 'group'")
    return UserStep(intent, text, tuple(entities), out.at(step.line))


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _read_slot_step(raw: Any, step: YMap, out: Collector, what: str) -> SlotStep | None:
    if not isinstance(raw, list):
        out.error(f"'slot_was_set' in {what} must be a list, got {_kind(raw)}", step.key_line("slot_was_set"))
        return None
    slots: list[tuple[str, Any]] = []
    named_only: list[str] = []
    for entry in raw:
        if isinstance(entry, str):
            slots.append((entry, True))
            named_only.append(entry)
        elif isinstance(entry, dict):
            slots.extend((str(k), freeze(v)) for k, v in entry.items())
        else:
            out.error(f"slot entry {entry!r} in {what} is not understood", step.key_line("slot_was_set"))
    return SlotStep(tuple(slots), out.at(step.line), tuple(named_only))


# ------------------------------------------------------------------------ domain


def read_domain(doc: YMap, out: Collector) -> Domain:
    """Read one domain file (or one part of a ``domain/`` directory)."""
    intents = _read_intents(doc.get("intents"), doc, out)
    entities = _read_entities(doc.get("entities"), doc, out)
    slots = _read_slots(doc.get("slots"), doc, out)
    responses = read_responses(doc, out)
    actions = _read_actions(doc.get("actions"), doc, out)
    forms = _read_forms(doc.get("forms"), doc, out)
    session_config = doc.get("session_config") or {}
    e2e = tuple(str(a) for a in (doc.get("e2e_actions") or []))
    return Domain(
        intents=intents,
        entities=entities,
        slots=slots,
        responses=freeze(responses),
        actions=tuple(actions),
        forms=forms,
        session_config=freeze(session_config if isinstance(session_config, dict) else {}),
        e2e_actions=e2e,
        location=out.at(1),
    )


def _read_actions(raw: Any, doc: YMap, out: Collector) -> list[str]:
    """``actions:`` names (``- name`` or ``- name: {send_domain: true}``); duplicates are errors, as in Rasa."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        out.error(f"'actions' must be a list, got {_kind(raw)}", doc.key_line("actions"), "write '- action_name' per line")
        return []
    actions: list[str] = []
    first_line: dict[str, int] = {}
    for index, entry in enumerate(raw):
        line = raw.item_line(index) if isinstance(raw, YSeq) else doc.line
        for name in (str(k) for k in entry) if isinstance(entry, dict) else (str(entry),):
            if name in first_line:
                out.error(f"action '{name}' is listed twice under 'actions:' (first on line {first_line[name]})", line,
                          "remove one of the two entries; Rasa refuses a domain with duplicate actions")
                continue
            first_line[name] = line
            actions.append(name)
    return actions


def read_responses(doc: YMap, out: Collector) -> dict[str, Any]:
    """The ``responses:`` (2.x: ``templates:``) of a domain or training data file."""
    key = "responses" if "responses" in doc else "templates"
    responses_raw = doc.get(key) or {}
    responses: dict[str, Any] = {}
    if not isinstance(responses_raw, dict):
        out.error(f"'{key}' must be a mapping of response names to variations, got {_kind(responses_raw)}",
                  doc.key_line(key))
        return responses
    for name, variations in responses_raw.items():
        line = responses_raw.key_line(name) if isinstance(responses_raw, YMap) else doc.line
        if not isinstance(variations, list):
            out.error(f"response '{name}' must be a list of variations, got {_kind(variations)}", line,
                      "write '- text: ...' under the response name")
            continue
        if not variations:  # Rasa accepts it; uttering it sends nothing
            out.warning(f"response '{name}' has no variations; the bot says nothing when it runs", line,
                        "write '- text: ...' under the response name")
        if not _variations_ok(str(name), variations, line, out):
            continue
        if not str(name).startswith("utter_"):
            out.warning(f"response '{name}' does not start with 'utter_'", line,
                        "Rasa only treats names starting with 'utter_' as responses")
        responses[str(name)] = freeze(variations)
    return responses


def _variations_ok(name: str, variations: list[Any], line: int, out: Collector) -> bool:
    """Each variation is a mapping with a ``text`` or a ``custom`` payload (Rasa's schema); report the others."""
    ok = True
    for index, variation in enumerate(variations):
        at = variations.item_line(index) if isinstance(variations, YSeq) else line
        if not isinstance(variation, dict):
            out.error(
                f"variation {index + 1} of response '{name}' must be a mapping with 'text:', got {_kind(variation)}",
                at,
                f"write '- text: {variation}'" if isinstance(variation, str) else "write '- text: ...'",
            )
            ok = False
        elif variation.get("text") is None and not variation.get("custom"):
            keys = ", ".join(str(k) for k in variation) or "none"
            out.error(
                f"variation {index + 1} of response '{name}' has neither 'text' nor 'custom' (keys: {keys})",
                at,
                "add 'text:' (buttons, images and other keys go beside it) or put a channel payload under 'custom:'",
            )
            ok = False
    return ok


def _read_intents(raw: Any, doc: YMap, out: Collector) -> tuple[IntentDef, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        out.error(f"'intents' must be a list, got {_kind(raw)}", doc.key_line("intents"))
        return ()
    result: list[IntentDef] = []
    first_line: dict[str, int] = {}
    for index, entry in enumerate(raw):
        line = raw.item_line(index) if isinstance(raw, YSeq) else doc.line
        if isinstance(entry, dict) and len(entry) == 1:
            intent = _read_intent_properties(entry, line, out)
        elif isinstance(entry, str):
            intent = IntentDef(entry, location=out.at(line))
        else:
            out.error(f"intent entry {entry!r} is not understood", line,
                      "write '- intent_name' or '- intent_name: {use_entities: [...]}'")
            continue
        if intent is None:
            continue
        if intent.name in first_line:
            out.error(
                f"intent '{intent.name}' is listed twice under 'intents:' (first on line {first_line[intent.name]})",
                line,
                "remove one of the two entries; Rasa refuses a domain whose intents are not unique",
            )
            continue
        first_line[intent.name] = line
        result.append(intent)
    return tuple(result)


def _read_intent_properties(entry: dict[Any, Any], line: int, out: Collector) -> IntentDef | None:
    """``- name: {use_entities: ..., ignore_entities: [...]}`` as Rasa reads it."""
    ((name, props),) = entry.items()
    if not isinstance(props, dict) or not props:
        out.error(
            f"intent '{name}' is followed by ':' but has no properties, got {_kind(props)}",
            line,
            f"remove the ':' after '{name}', or add 'use_entities:' / 'ignore_entities:' below it",
        )
        return None
    if "triggers" in props:
        out.error(
            f"intent '{name}' uses 'triggers', the MappingPolicy format that Rasa 3 no longer accepts",
            line,
            f"remove 'triggers' and write a rule instead: '- intent: {name}' followed by "
            f"'- action: {props['triggers']}'",
        )
    use = props.get("use_entities", True)
    use_entities: tuple[str, ...] | None
    if use is True:
        use_entities = None
    elif use is False or use is None:
        use_entities = ()
    elif isinstance(use, list):
        use_entities = tuple(str(u) for u in use)
    elif isinstance(use, str):
        # Rasa 3.6 accepts any string here and takes it as the list of its characters (so
        # 'None' uses the entities N, o, n and e: in practice none)
        out.warning(f"'use_entities' of intent '{name}' is the string '{use}': read as Rasa reads it, "
                    "as the list of its characters (in practice: no entities)", line,
                    "write use_entities: true, use_entities: false or use_entities: [entity, ...]")
        use_entities = tuple(e for e in dict.fromkeys(use) if e.strip())
    else:
        out.error(f"'use_entities' of intent '{name}' must be true, false or a list, got {_kind(use)}", line,
                  "write use_entities: true, use_entities: false or use_entities: [entity, ...]")
        use_entities = None
    ignore = props.get("ignore_entities") or []
    if not isinstance(ignore, list):
        out.error(f"'ignore_entities' of intent '{name}' must be a list, got {_kind(ignore)}", line,
                  "write ignore_entities: [entity, ...]")
        ignore = []
    ignore_entities = tuple(str(i) for i in ignore)
    both = sorted(set(use_entities or ()) & set(ignore_entities))
    if both:
        out.warning(
            f"intent '{name}' both uses and ignores entities {', '.join(both)}; ignoring wins",
            line,
            "list each entity under only one of 'use_entities' and 'ignore_entities'",
        )
    return IntentDef(str(name), use_entities, ignore_entities, out.at(line))


def _read_entities(raw: Any, doc: YMap, out: Collector) -> tuple[EntityDef, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        out.error(f"'entities' must be a list, got {_kind(raw)}", doc.key_line("entities"))
        return ()
    result = []
    first_line: dict[str, int] = {}
    for index, entry in enumerate(raw):
        line = raw.item_line(index) if isinstance(raw, YSeq) else doc.line
        name = entry if isinstance(entry, str) else next(iter(entry)) if isinstance(entry, dict) and entry else None
        if isinstance(name, str):
            if name in first_line:
                out.error(f"entity '{name}' is listed twice under 'entities:' (first on line {first_line[name]})", line,
                          "remove one of the two entries; Rasa refuses a domain with duplicate entities")
                continue
            first_line[name] = line
        if isinstance(entry, str):
            result.append(EntityDef(entry, location=out.at(line)))
        elif isinstance(entry, dict) and len(entry) == 1:
            (name, props), = entry.items()
            props = props if isinstance(props, dict) else {}
            result.append(
                EntityDef(
                    str(name),
                    tuple(str(r) for r in props.get("roles") or []),
                    tuple(str(g) for g in props.get("groups") or []),
                    bool(props.get("influence_conversation", True)),
                    out.at(line),
                )
            )
        else:
            out.error(f"entity entry {entry!r} is not understood", line, "write '- entity_name' or '- entity_name: {roles: [...]}'")
    return tuple(result)


_SLOT_ALIASES = {"unfeaturized": "any"}


def _read_slots(raw: Any, doc: YMap, out: Collector) -> tuple[SlotDef, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        out.error(f"'slots' must be a mapping of slot names to definitions, got {_kind(raw)}", doc.key_line("slots"))
        return ()
    result = []
    for name, props in raw.items():
        line = raw.key_line(name) if isinstance(raw, YMap) else doc.line
        if not isinstance(props, dict) or "type" not in props:
            out.error(f"slot '{name}' has no 'type'", line, f"add 'type:' with one of {', '.join(SLOT_TYPES)}")
            continue
        slot_type = str(props["type"])
        influence_default = slot_type != "unfeaturized"
        slot_type = _SLOT_ALIASES.get(slot_type, slot_type)
        if slot_type not in SLOT_TYPES:
            if "." in slot_type:
                out.warning(f"custom slot type '{slot_type}' of slot '{name}' is treated as 'any'", line)
                slot_type = "any"
            else:
                out.error(
                    f"unknown slot type '{slot_type}' for slot '{name}'",
                    props.key_line("type") if isinstance(props, YMap) else line,
                    f"use one of {', '.join(SLOT_TYPES)}; received '{slot_type}'",
                )
                continue
        influence = props.get("influence_conversation", influence_default and slot_type != "any")
        if not isinstance(influence, bool):
            out.error(f"'influence_conversation' of slot '{name}' must be true or false, got {_kind(influence)}", line)
            influence = True
        values = props.get("values") or []
        if not isinstance(values, list):
            out.error(f"'values' of slot '{name}' must be a list, got {_kind(values)}",
                      props.key_line("values") if isinstance(props, YMap) else line,
                      "write the values as a list, e.g. values: [low, high]")
            values = []
        elif slot_type == "categorical" and not values:
            out.warning(f"categorical slot '{name}' has no 'values'; every value it takes counts as __other__", line,
                        "list the values the slot takes under 'values:'")
        bounds = []
        for key, default in (("min_value", 0.0), ("max_value", 1.0)):
            value = props.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                out.error(f"'{key}' of slot '{name}' must be a number, got {_kind(value)}", line)
                value = default
            bounds.append(float(value))
        if slot_type == "float" and bounds[0] >= bounds[1]:
            out.error(f"float slot '{name}': min_value {bounds[0]} must be smaller than max_value {bounds[1]}", line,
                      "set min_value below max_value (Rasa refuses the slot otherwise)")
        mappings = props.get("mappings") or []
        if not mappings and is_rasa3_document(doc):
            out.warning(
                f"slot '{name}' has no 'mappings'; Rasa 3 refuses such a domain (deltatrain trains it: "
                "mappings only matter when the assistant runs)",
                line,
                "add 'mappings:' to the slot, e.g. '- type: custom' for a slot set by a custom action",
            )
        result.append(
            SlotDef(
                name=str(name),
                type=slot_type,
                influence_conversation=influence,
                values=tuple(str(v).lower() if slot_type == "categorical" else str(v) for v in values),
                min_value=bounds[0],
                max_value=bounds[1],
                initial_value=freeze(props.get("initial_value")),
                mappings=tuple(freeze(m) for m in mappings) if isinstance(mappings, list) else (),
                location=out.at(line),
                mapping_locations=tuple(
                    out.at(mappings.item_line(i)) for i in range(len(mappings))
                ) if isinstance(mappings, YSeq) else (),
            )
        )
    return tuple(result)


def _read_forms(raw: Any, doc: YMap, out: Collector) -> tuple[FormDef, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        out.error(f"'forms' must be a mapping of form names to definitions, got {_kind(raw)}", doc.key_line("forms"))
        return ()
    result = []
    for name, props in raw.items():
        line = raw.key_line(name) if isinstance(raw, YMap) else doc.line
        required = props.get("required_slots", []) if isinstance(props, dict) else []
        if isinstance(required, dict):  # Rasa 2.x: slot -> mappings
            if is_rasa3_document(doc):
                out.warning(
                    f"'required_slots' of form '{name}' is a Rasa 2 mapping of slots to mappings; Rasa 3 refuses it "
                    "(deltatrain reads the slot names)",
                    line,
                    "list the slot names under 'required_slots:' and move their mappings to the slots",
                )
            slots = tuple(str(k) for k in required.keys())
            lines = tuple(required.key_line(k) if isinstance(required, YMap) else line for k in required)
        elif isinstance(required, list):
            slots = tuple(str(s) for s in required)
            lines = tuple(required.item_line(i) if isinstance(required, YSeq) else line for i in range(len(required)))
        else:
            out.error(f"'required_slots' of form '{name}' must be a list", line)
            slots, lines = (), ()
        result.append(FormDef(str(name), slots, out.at(line), tuple(out.at(n) for n in lines)))
    return tuple(result)


def duplicates_across(parts: list[Domain]) -> list[Problem]:
    """Names declared in more than one file of a ``domain/`` directory: warnings, as in Rasa (first one wins)."""
    problems: list[Problem] = []
    kinds: tuple[tuple[str, Callable[[Domain], list[tuple[str, Location | None]]]], ...] = (
        ("intent", lambda d: [(i.name, i.location) for i in d.intents]),
        ("entity", lambda d: [(e.name, e.location) for e in d.entities]),
        ("slot", lambda d: [(s.name, s.location) for s in d.slots]),
        ("form", lambda d: [(f.name, f.location) for f in d.forms]),
        ("response", lambda d: [(name, d.location) for name in d.responses]),
        ("action", lambda d: [(name, d.location) for name in d.actions]),
    )
    for kind, names_of in kinds:
        first: dict[str, Location | None] = {}
        for part in parts:
            for name, location in names_of(part):
                if name not in first:
                    first[name] = location
                    continue
                where = f" (first in {first[name]})" if first[name] else ""
                problems.append(
                    Problem(
                        "warning",
                        f"{kind} '{name}' is declared in more than one domain file{where}; the first one is used",
                        Location(location.file) if location and kind in ("response", "action") else location,
                        "keep each name in one domain file",
                        code="schema",
                    )
                )
    return problems


def merge_domains(parts: list[Domain]) -> Domain:
    """Merge the files of a ``domain/`` directory: lists concatenated, first definition wins."""

    def unique(items: list[Any], key: Callable[[Any], str]) -> tuple[Any, ...]:
        seen: dict[str, Any] = {}
        for item in items:
            seen.setdefault(key(item), item)
        return tuple(seen.values())

    responses: dict[str, Any] = {}
    session: dict[str, Any] = {}
    for part in parts:
        for name, value in part.responses.items():
            responses.setdefault(name, value)
        session.update(part.session_config)
    return Domain(
        intents=unique([i for p in parts for i in p.intents], lambda i: i.name),
        entities=unique([e for p in parts for e in p.entities], lambda e: e.name),
        slots=unique([s for p in parts for s in p.slots], lambda s: s.name),
        responses=freeze(responses),
        actions=unique([a for p in parts for a in p.actions], str),
        forms=unique([f for p in parts for f in p.forms], lambda f: f.name),
        session_config=freeze(session),
        e2e_actions=unique([a for p in parts for a in p.e2e_actions], str),
        location=parts[0].location if parts else None,
    )


def check_training_keys(doc: YMap, out: Collector) -> None:
    """Warn about top-level keys of a training data file that nothing reads (Rasa ignores them silently)."""
    for key in doc:
        if key in TRAINING_FILE_KEYS:
            continue
        known = f"; '{key}' belongs in the domain file" if key in DOMAIN_KEYS else ""
        close = difflib.get_close_matches(str(key), TRAINING_FILE_KEYS, n=1, cutoff=0.6)
        out.warning(
            f"unknown top-level key '{key}' in a training data file is ignored{known}",
            doc.key_line(key),
            (f"did you mean '{close[0]}'? " if close else "")
            + f"a training data file has only the keys {', '.join(TRAINING_FILE_KEYS)}",
        )


def is_domain_document(doc: Any) -> bool:
    """Whether a parsed YAML document looks like a domain file."""
    return isinstance(doc, dict) and any(k in doc for k in DOMAIN_KEYS)


def is_training_document(doc: Any) -> bool:
    """Whether a parsed YAML document holds nlu/stories/rules."""
    return isinstance(doc, dict) and any(k in doc for k in TRAINING_KEYS)


def relative_side_path(file: str, side: str) -> str:
    """Resolve a lookup-file path given in ``file``: relative to the project root or the file."""
    return str(PurePosixPath(file).parent / side)
