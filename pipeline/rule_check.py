"""Rasa's RulePolicy checks, run on the data model before anything trains (no I/O).

Rasa 3.6 refuses to train (``InvalidRule``) when its RulePolicy finds

* a rule with more than one user message (``restrict_rules``, default on),
* an *incomplete* rule: an action that sets a slot or the active loop in one
  rule but not in another (``check_for_contradictions``, default on),
* a *contradiction*: replaying every rule and story, a learned rule predicts
  another action than the one the data says (``check_for_contradictions``).

This module replays rules and stories exactly as Rasa's RulePolicy does
(``rasa/core/policies/rule_policy.py``): rules become partial states cut at
Rasa's ``...`` marker (so a rule that *begins* with an action only applies
after that action), ``null`` in a rule means "must not be set", conditions are
part of the state, slots filled from entities count, and forms follow the loop
happy path and Rasa's rejection emulation. :func:`check_rules` returns one
:class:`~pipeline.errors.Problem` (an error, as Rasa fails) per finding, with
the file:line of the step at fault.

Problem codes::

    rule-contradiction        a rule's step is predicted differently by another rule
    rule-story-contradiction  a story's step is predicted differently by a rule
    incomplete-rule           an action sets a slot or the active loop in one rule but not here
    rule-too-long             a rule with more than one user message (``restrict_rules: true``)

Deliberate differences from Rasa: every finding of the three checks is
reported at once (Rasa stops at the first check that fails); when two rules
tie for the longest match, the alphabetically last key wins (Rasa picks one
depending on Python's hash order).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, NamedTuple, Sequence, Union

from pipeline.data.model import (
    ActionStep,
    ActiveLoopStep,
    CheckpointStep,
    Config,
    Domain,
    EntityValue,
    OrStep,
    SlotDef,
    SlotStep,
    Step,
    Story,
    UserStep,
)
from pipeline.errors import Location, Problem

__all__ = [
    "DEFAULT_ACTION_MAPPINGS",
    "DO_NOT_PREDICT_LOOP_ACTION",
    "LOOP_WAS_INTERRUPTED",
    "RuleAnalysis",
    "RuleCheckOptions",
    "RuleLookup",
    "SHOULD_NOT_BE_SET",
    "RULE_SNIPPET_ACTION",
    "check_rules",
    "analyze_rules",
    "build_rule_lookup",
    "fills_from_entity",
    "compute_slot_features",
    "rule_check_options",
]

#: Rasa's marker for "anything may have happened here" in a rule.
RULE_SNIPPET_ACTION = "..."
#: A rule's ``slot: null`` / ``active_loop: null`` (Rasa's spelling, it appears in keys).
SHOULD_NOT_BE_SET = "should_not_be_set"
ACTION_LISTEN = "action_listen"
#: Intents whose default action overrules every rule.
DEFAULT_ACTION_MAPPINGS = {"restart": "action_restart", "back": "action_back", "session_start": "action_session_start"}
DEFAULT_RULES = "predicting default action with intent "
LOOP_RULES = "handling active loops and forms - "
LOOP_RULES_SEPARATOR = " - "
LOOP_WAS_INTERRUPTED = "loop_was_interrupted"
DO_NOT_PREDICT_LOOP_ACTION = "do_not_predict_loop_action"
OTHER_CATEGORY = "__other__"
#: A story graph expanding to more conversations than this is cut (and said so).
MAX_TRACKERS = 20_000
_FEATURIZED_TYPES = ("text", "bool", "categorical", "float", "list")
_HINT_CONTRADICTION = (
    "update the stories and rules so that they don't contradict each other: a rule that should let the "
    "conversation go on after its last action needs 'wait_for_user_input: false'; a story that deliberately "
    "differs needs a condition (slot, active_loop) in the rule that tells the two apart"
)


@dataclass(frozen=True)
class RuleCheckOptions:
    """The RulePolicy options that change what is checked (Rasa's names and defaults)."""

    core_fallback_action_name: str = "action_default_fallback"
    enable_fallback_prediction: bool = True
    restrict_rules: bool = True
    check_for_contradictions: bool = True


def rule_check_options(config: Config) -> RuleCheckOptions | None:
    """RulePolicy's options from the config; ``None`` when no RulePolicy is configured (nothing is checked)."""
    if not config.policies or config.policies_is_default:
        return RuleCheckOptions()  # Rasa's default policies include RulePolicy
    component = next((c for c in config.policies if c.name == "RulePolicy"), None)
    if component is None:
        return None
    defaults = RuleCheckOptions()
    return RuleCheckOptions(
        core_fallback_action_name=str(component.option("core_fallback_action_name", defaults.core_fallback_action_name)),
        enable_fallback_prediction=component.option("enable_fallback_prediction", True) is not False,
        restrict_rules=component.option("restrict_rules", True) is not False,
        check_for_contradictions=component.option("check_for_contradictions", True) is not False,
    )


# ------------------------------------------------------------------- events


class _User(NamedTuple):
    intent: str | None
    text: str | None
    entities: tuple[EntityValue, ...]


class _Action(NamedTuple):
    name: str


class _Slot(NamedTuple):
    name: str
    value: Any


class _Loop(NamedTuple):
    name: str | None


class _Rejected(NamedTuple):
    name: str


_Event = Union[_User, _Action, _Slot, _Loop, _Rejected]


@dataclass(frozen=True)
class _Tracker:
    """One conversation of a rule or story, with the location of each event."""

    name: str
    is_rule: bool
    events: tuple[_Event, ...]
    locations: tuple[Location | None, ...]
    location: Location | None


State = dict[str, dict[str, Any]]


# ------------------------------------------------------------------- domain


def compute_slot_features(slot: SlotDef, value: Any) -> list[float]:
    """Rasa's ``Slot.as_feature`` (3.6): empty for slots that do not influence the conversation."""
    if not slot.influence_conversation or slot.type not in _FEATURIZED_TYPES:
        return []
    if slot.type == "text":
        return [1.0 if value is not None else 0.0]
    if slot.type == "list":
        if value is not None and not isinstance(value, (list, tuple)):
            value = [value] if value else value
        try:
            return [1.0 if value is not None and len(value) > 0 else 0.0]
        except TypeError:
            return [0.0]
    if slot.type == "bool":
        parsed = _bool_from_any(value) if value is not None else None
        return [0.0, 0.0] if parsed is None else [1.0, float(parsed)]
    if slot.type == "float":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return [0.0, 0.0]
        capped = max(slot.min_value, min(slot.max_value, number))
        span = abs(slot.max_value - slot.min_value) or 1
        return [1.0, (capped - slot.min_value) / span]
    values = _categories(slot)
    features = [0.0] * len(values)
    if value is None:
        return features
    lowered = str(value).lower()
    features[values.index(lowered) if lowered in values else values.index(OTHER_CATEGORY)] = 1.0
    return features


def _categories(slot: SlotDef) -> list[str]:
    values = [str(v).lower() for v in slot.values if v is not None]
    return values if OTHER_CATEGORY in values else [*values, OTHER_CATEGORY]


def _bool_from_any(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1.0
    if isinstance(value, str):
        if value.isnumeric():
            return float(value) == 1.0
        if value.strip().lower() == "true":
            return True
        if value.strip().lower() == "false":
            return False
    return None


@dataclass(frozen=True)
class _DomainView:
    """What the states need from the domain."""

    slots: tuple[SlotDef, ...]  # slots with features, in domain order
    entity_slots: tuple[SlotDef, ...]  # slots filled from entities outside forms
    used_entities: Mapping[str, frozenset[str]]  # intent -> entity labels it featurizes
    forms: frozenset[str]

    @classmethod
    def of(cls, domain: Domain) -> _DomainView:
        influencing = [e for e in domain.entities if e.influence_conversation]
        labels: dict[str, set[str]] = {}
        for entity in influencing:
            labels[entity.name] = {entity.name, *(f"{entity.name}#{r}" for r in entity.roles),
                                   *(f"{entity.name}#{g}" for g in entity.groups)}
        used: dict[str, frozenset[str]] = {}
        for intent in domain.intents:
            names = set(labels) if intent.use_entities is None else set(intent.use_entities) & set(labels)
            names -= set(intent.ignore_entities)
            used[intent.name.split("/", 1)[0]] = frozenset().union(*(labels[n] for n in names)) if names else frozenset()
        return cls(
            slots=tuple(s for s in domain.slots if compute_slot_features(s, None)),
            entity_slots=tuple(s for s in domain.slots if any(fills_from_entity(m) for m in s.mappings)),
            used_entities=used,
            forms=frozenset(domain.form_names),
        )

    def entity_labels(self, user: _User) -> tuple[str, ...]:
        labels = set()
        for entity in user.entities:
            labels.add(entity.entity)
            labels.update(f"{entity.entity}#{extra}" for extra in (entity.role, entity.group) if extra)
        wanted = self.used_entities.get((user.intent or "").split("/", 1)[0])
        return tuple(sorted(labels if wanted is None else labels & wanted))

    def slots_for_entities(self, entities: Sequence[EntityValue]) -> list[_Slot]:
        """Rasa's ``Domain.slots_for_entities``: slots with a ``from_entity`` mapping outside forms."""
        events = []
        for slot in self.entity_slots:
            found = [
                "" if e.value is None else e.value
                for mapping in slot.mappings
                if fills_from_entity(mapping)
                for e in entities
                if e.entity == mapping.get("entity") and e.role == mapping.get("role") and e.group == mapping.get("group")
            ]
            if found:
                events.append(_Slot(slot.name, found if slot.type == "list" else found[-1]))
        return events


def fills_from_entity(mapping: Mapping[str, Any]) -> bool:
    """Whether a slot mapping fills the slot from an entity in every user turn (``from_entity``, not form-only)."""
    if mapping.get("type") != "from_entity":
        return False
    conditions = mapping.get("conditions")
    return not (conditions and isinstance(conditions, (list, tuple)) and _get(conditions[0], "active_loop") is not None)


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


# ------------------------------------------------------------------ trackers


def _step_alternatives(step: Step, domain: _DomainView, is_rule: bool) -> list[list[_Event]]:
    """The event lists one step can stand for (several for ``or``)."""
    if isinstance(step, OrStep):
        return [alt for option in step.alternatives for alt in _step_alternatives(option, domain, is_rule)]
    if isinstance(step, UserStep):
        return [[_User(step.intent, step.text, tuple(step.entities))]]
    if isinstance(step, ActionStep):
        return [[_Action(step.name)]]
    if isinstance(step, SlotStep):
        return [[_Slot(name, SHOULD_NOT_BE_SET if value is None and is_rule else value) for name, value in step.slots]]
    if isinstance(step, ActiveLoopStep):
        return [[_Loop(SHOULD_NOT_BE_SET if step.name is None and is_rule else step.name)]]
    return [[]]


def _explicit_events(
    pairs: Sequence[tuple[_Event, Location | None]], domain: _DomainView, *, final_listen: bool
) -> list[tuple[_Event, Location | None]]:
    """Rasa's ``StoryStep.explicit_events``: listens before user turns and at the end, entity slots."""
    result: list[tuple[_Event, Location | None]] = []
    for event, location in pairs:
        if isinstance(event, _User):
            if not result or result[-1][0] != _Action(ACTION_LISTEN):
                result.append((_Action(ACTION_LISTEN), location))
            result.append((event, location))
            result.extend((slot, location) for slot in domain.slots_for_entities(event.entities))
        else:
            result.append((event, location))
    if final_listen and (not result or result[-1][0] != _Action(ACTION_LISTEN)):
        last = next((loc for ev, loc in reversed(result) if isinstance(ev, _Action)), None)
        result.append((_Action(ACTION_LISTEN), last))
    return result


def _variants(steps: Sequence[Step], story: Story, domain: _DomainView) -> list[list[tuple[_Event, Location | None]]]:
    per_step = []
    for step in steps:
        options = _step_alternatives(step, domain, story.is_rule)
        per_step.append([[(e, step.location or story.location) for e in option] for option in options])
    combos = []
    for combo in itertools.product(*per_step):
        combos.append([pair for part in combo for pair in part])
        if len(combos) >= MAX_TRACKERS:
            break
    return combos


def _rule_trackers(rule: Story, domain: _DomainView) -> list[_Tracker]:
    condition = [pair for part in _variants(rule.condition, rule, domain)[:1] for pair in part]
    snippet = (_Action(RULE_SNIPPET_ACTION), rule.location)
    trackers = []
    for variant in _variants([s for s in rule.steps if not isinstance(s, CheckpointStep)], rule, domain):
        pairs = [*condition, *([] if rule.conversation_start else [snippet]), *variant]
        if not rule.wait_for_user_input:
            pairs.append(snippet)
        events = _explicit_events(pairs, domain, final_listen=True)
        trackers.append(_tracker(rule.name, True, events, rule.location))
    return trackers


def _tracker(name: str, is_rule: bool, pairs: Sequence[tuple[_Event, Location | None]], location: Location | None) -> _Tracker:
    return _Tracker(name, is_rule, tuple(e for e, _ in pairs), tuple(loc for _, loc in pairs), location)


@dataclass(frozen=True)
class _Block:
    story: Story
    start: tuple[str, ...]
    end: tuple[str, ...]
    variants: tuple[tuple[tuple[_Event, Location | None], ...], ...]


def _blocks(story: Story, domain: _DomainView) -> list[_Block]:
    blocks: list[_Block] = []
    start: list[str] = []
    end: list[str] = []
    steps: list[Step] = []

    def close() -> None:
        final = not end
        variants = tuple(tuple(_explicit_events(v, domain, final_listen=final)) for v in _variants(steps, story, domain))
        blocks.append(_Block(story, tuple(start), tuple(end), variants))

    for step in story.steps:
        if isinstance(step, CheckpointStep):
            (end if steps else start).append(step.name)
            continue
        if end:
            close()
            start, end, steps = list(end), [], []
        steps.append(step)
    close()
    return blocks


def _story_trackers(stories: Sequence[Story], domain: _DomainView) -> list[_Tracker]:
    """Stories joined at checkpoints (each block once per conversation), ``or`` expanded."""
    blocks = [block for story in stories for block in _blocks(story, domain)]
    starting: dict[str, list[int]] = {}
    for index, block in enumerate(blocks):
        for name in block.start:
            starting.setdefault(name, []).append(index)
    result: list[_Tracker] = []

    def walk(path: tuple[int, ...], pairs: tuple[tuple[_Event, Location | None], ...]) -> None:
        block = blocks[path[-1]]
        for variant in block.variants:
            if len(result) >= MAX_TRACKERS:
                return
            extended = pairs + variant
            successors = list(dict.fromkeys(i for name in block.end for i in starting.get(name, []) if i not in path))
            if not successors:
                names = " > ".join(dict.fromkeys(blocks[i].story.name for i in path))
                result.append(_tracker(names, False, extended, blocks[path[0]].story.location))
            for successor in successors:
                walk(path + (successor,), extended)

    for index, block in enumerate(blocks):
        if not block.start:
            walk((index,), ())
    return result


# -------------------------------------------------------------------- states


def _applied_events(events: Sequence[_Event]) -> list[_Event]:
    """Rasa's ``DialogueStateTracker.applied_events`` for training data (forms' happy turns undone)."""
    loop_names = {e.name for e in events if isinstance(e, _Loop) and e.name}
    applied: list[_Event] = []
    for event in events:
        if isinstance(event, _Action) and event.name in loop_names and not _first_loop_run(event.name, applied):
            _undo_till_previous_loop_run(event.name, applied)
        else:
            applied.append(event)
    return applied


def _first_loop_run(loop: str, applied: Sequence[_Event]) -> bool:
    next_action: str | None = None
    for event in reversed(applied):
        if isinstance(event, _Loop) and event.name is None:
            return True
        if isinstance(event, _Rejected) and event.name == loop:
            return True
        if isinstance(event, _User) and next_action is not None and next_action != loop:
            return True
        if isinstance(event, _Action):
            if event.name == loop:
                return False
            next_action = event.name
    return True


def _undo_till_previous_loop_run(loop: str, applied: list[_Event]) -> None:
    offset = 0
    for event in reversed(applied[:]):
        if isinstance(event, _Action) and event.name == loop:
            break
        if isinstance(event, (_Action, _User)):
            del applied[-1 - offset]
        else:
            offset += 1


@dataclass
class _Replay:
    """The tracker after some applied events: one state before each action, and the current one."""

    states: list[State]
    latest_action: str | None
    latest_intent: str | None
    active_loop: str | None  # SHOULD_NOT_BE_SET kept
    loop_rejected: bool


def _replay(applied: Sequence[_Event], domain: _DomainView, *, omit_unset_slots: bool, initial: Mapping[str, Any]) -> _Replay:
    values: dict[str, Any] = dict(initial)
    been_set: set[str] = set()
    user: _User | None = None
    prev: str | None = None
    loop: str | None = None
    rejected = False
    states: list[State] = []

    def snapshot() -> State:
        state: State = {}
        if user is not None and (user.intent or user.text or user.entities):
            sub: dict[str, Any] = {}
            if user.intent:
                sub["intent"] = user.intent.split("/", 1)[0]
            elif user.text:
                sub["text"] = user.text
            entities = domain.entity_labels(user)
            if entities:
                sub["entities"] = entities
            if sub:
                state["user"] = sub
        slots: dict[str, Any] = {}
        for slot in domain.slots:
            if omit_unset_slots and slot.name not in been_set:
                continue
            value = values.get(slot.name)
            if value == SHOULD_NOT_BE_SET and slot.type == "list":
                # Rasa's ListSlot wraps the marker into a list: ``items: null`` in a rule
                # then means "items is set" (a quirk of Rasa 3.6, kept to judge as it does)
                value = [SHOULD_NOT_BE_SET]
            if value == SHOULD_NOT_BE_SET:
                slots[slot.name] = SHOULD_NOT_BE_SET
                continue
            features = compute_slot_features(slot, value)
            if any(features):
                slots[slot.name] = tuple(features)
        if slots:
            state["slots"] = slots
        if prev is not None:
            state["prev_action"] = {"action_text": prev} if " " in prev.strip() else {"action_name": prev}
        if loop is not None:
            state["active_loop"] = {"name": loop}
        return state

    for event in applied:
        if isinstance(event, _Action):
            states.append(snapshot())
            prev = event.name
            if event.name == loop:
                rejected = False
        elif isinstance(event, _User):
            user = event
        elif isinstance(event, _Slot):
            values[event.name] = event.value
            been_set.add(event.name)
        elif isinstance(event, _Loop):
            loop, rejected = event.name, False
        elif isinstance(event, _Rejected):
            if loop is not None and loop != SHOULD_NOT_BE_SET and event.name == loop:
                rejected = True
    states.append(snapshot())
    intent = user.intent.split("/", 1)[0] if user is not None and user.intent else None
    return _Replay(states, prev, intent, loop, rejected)


def _is_snippet_state(state: State) -> bool:
    return state.get("prev_action", {}).get("action_name") == RULE_SNIPPET_ACTION


def _feature_key(states: Sequence[State]) -> str | None:
    """Rasa's rule key: the states after the last ``...``, as sorted JSON."""
    kept: list[State] = []
    for state in reversed(states):
        if _is_snippet_state(state):
            break
        kept.insert(0, state)
    return json.dumps(kept, sort_keys=True) if kept else None


def _prev_name(state: State) -> str | None:
    prev = state.get("prev_action") or {}
    name = prev.get("action_name") or prev.get("action_text")
    return str(name) if name else None


def _loop_name(state: State) -> str | None:
    name = state.get("active_loop", {}).get("name")
    return None if name in (None, SHOULD_NOT_BE_SET) else name


def _is_listen_state(state: State) -> bool:
    return state.get("prev_action", {}).get("action_name") == ACTION_LISTEN


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def _rule_matches_state(rule_state: State, state: State) -> bool:
    """Rasa's ``_does_rule_match_state``: every feature of the rule is in the state."""
    for kind, rule_sub in rule_state.items():
        sub = state.get(kind, {})
        for key, expected in rule_sub.items():
            actual = sub.get(key)
            if expected and expected != SHOULD_NOT_BE_SET and actual != expected:
                return False
            if expected == SHOULD_NOT_BE_SET and actual and actual != SHOULD_NOT_BE_SET:
                return False
    return True


def _is_applicable(rule_states: Sequence[State], turn: int, state: State) -> bool:
    """Rasa's ``_is_rule_applicable`` for the ``turn``-th state counted from the end."""
    if turn >= len(rule_states):
        return True
    rule_state = rule_states[len(rule_states) - 1 - turn]
    rule_prev, prev = rule_state.get("prev_action"), state.get("prev_action")
    if not rule_prev and not prev:
        return True
    if not rule_prev or not prev:
        return False
    return _rule_matches_state(rule_state, state)


# -------------------------------------------------------------------- lookup


@dataclass
class RuleLookup:
    """What Rasa's RulePolicy learns: rule keys (JSON state lists) and the action each predicts."""

    rules: dict[str, str] = field(default_factory=dict)
    loop_unhappy: dict[str, str] = field(default_factory=dict)
    _parsed: dict[str, list[State]] = field(default_factory=dict, repr=False)
    #: one-state ``action_listen`` keys dropped because a story goes on after that action (Rasa's ``_should_delete``)
    dropped: set[str] = field(default_factory=set)
    _index: dict[int, tuple[int, dict[str | None, list[str]]]] = field(default_factory=dict, repr=False)

    def states_of(self, key: str) -> list[State]:
        """The partial states of a key (JSON lists turned back into tuples, as Rasa does)."""
        if key not in self._parsed:
            self._parsed[key] = [_frozen(s) for s in json.loads(key)]
        return self._parsed[key]

    def possible_keys(self, table: Mapping[str, str], states: Sequence[State]) -> list[str]:
        """Rasa's ``_get_possible_keys``: the keys whose states match the end of ``states``."""
        last_prev = _prev_name(states[-1]) if states else None
        pending = list(self._by_last_prev(table).get(last_prev, ()))
        accepted: list[str] = []
        for turn, state in enumerate(reversed(states)):
            still = []
            for key in pending:
                rule_states = self.states_of(key)
                if turn >= len(rule_states):
                    accepted.append(key)
                elif _is_applicable(rule_states, turn, state):
                    still.append(key)
            pending = still
            if not pending:
                break
        return accepted + pending

    def _by_last_prev(self, table: Mapping[str, str]) -> dict[str | None, list[str]]:
        """Keys grouped by the previous action of their last state (the only ones that can match it)."""
        cached = self._index.get(id(table))
        if cached is None or cached[0] != len(table):
            groups: dict[str | None, list[str]] = {}
            for key in table:
                groups.setdefault(_prev_name(self.states_of(key)[-1]), []).append(key)
            cached = self._index[id(table)] = (len(table), groups)
        return cached[1]


def _initial_values(domain: Domain) -> dict[str, Any]:
    return {s.name: s.initial_value for s in domain.slots if s.initial_value is not None}


def _examples(tracker: _Tracker, domain: _DomainView, *, omit_unset_slots: bool, initial: Mapping[str, Any]) -> Iterator[tuple[list[State], str]]:
    applied = _applied_events(tracker.events)
    states = _replay(applied, domain, omit_unset_slots=omit_unset_slots, initial=initial).states
    actions = [e.name for e in applied if isinstance(e, _Action)]
    for index, action in enumerate(actions):
        yield states[: index + 1], action


def _build_lookup(rule_trackers: Sequence[_Tracker], story_trackers: Sequence[_Tracker], view: _DomainView,
                  initial: Mapping[str, Any]) -> RuleLookup:
    lookup = RuleLookup()
    ambiguous: set[str] = set()
    rule_examples = [ex for t in rule_trackers for ex in _examples(t, view, omit_unset_slots=True, initial=initial)]
    for states, action in rule_examples:
        key = _feature_key(states)
        if key is None or key in ambiguous:
            continue
        if key in lookup.rules and lookup.rules[key] != action:
            ambiguous.add(key)
            del lookup.rules[key]
        else:
            lookup.rules[key] = action
    lookup.rules = {k: a for k, a in lookup.rules.items() if a != RULE_SNIPPET_ACTION}
    story_examples = [ex for t in story_trackers for ex in _examples(t, view, omit_unset_slots=False, initial=initial)]
    for states, action in (*rule_examples, *story_examples):
        loop = _loop_name(states[-1])
        if not loop:
            continue
        short = [states[-1]] if len(states) == 1 or not states[-2].get("prev_action") else [
            {"prev_action": states[-2]["prev_action"]}, states[-1]]
        key = _feature_key(short)
        if not key:
            continue
        if _is_listen_state(states[-1]) and action == loop:
            lookup.loop_unhappy[key] = LOOP_WAS_INTERRUPTED
        elif not _is_listen_state(states[-1]) and action != loop:
            lookup.loop_unhappy[key] = DO_NOT_PREDICT_LOOP_ACTION
    return lookup


def build_rule_lookup(domain: Domain, stories: Sequence[Story]) -> RuleLookup:
    """The rule lookup Rasa's RulePolicy learns from the rules (and the stories, for forms' unhappy paths)."""
    view = _DomainView.of(domain)
    rules = [t for s in stories if s.is_rule for t in _rule_trackers(s, view)]
    plain = _story_trackers([s for s in stories if not s.is_rule], view)
    return _build_lookup(rules, plain, view, _initial_values(domain))


# ---------------------------------------------------------------- prediction


class _Prediction(NamedTuple):
    action: str | None
    source: str | None


class _Policy:
    """Rasa's RulePolicy prediction on a training conversation (``_predict``, text-free)."""

    def __init__(self, lookup: RuleLookup, view: _DomainView, options: RuleCheckOptions, initial: Mapping[str, Any]):
        self.lookup = lookup
        self.view = view
        self.options = options
        self.initial = initial

    def predict(self, events: Sequence[_Event], is_rule: bool) -> _Prediction:
        played = _replay(_applied_events(events), self.view, omit_unset_slots=False, initial=self.initial)
        states = played.states
        if played.latest_action == ACTION_LISTEN and played.latest_intent in DEFAULT_ACTION_MAPPINGS:
            return _Prediction(DEFAULT_ACTION_MAPPINGS[played.latest_intent], DEFAULT_RULES + played.latest_intent)
        loop = played.active_loop if played.active_loop != SHOULD_NOT_BE_SET else None
        if loop and not played.loop_rejected:
            if played.latest_action and played.latest_action != loop:
                return _Prediction(loop, LOOP_RULES + loop)
            if played.latest_action == loop:
                return _Prediction(ACTION_LISTEN, LOOP_RULES + loop + LOOP_RULES_SEPARATOR + ACTION_LISTEN)
        keys = self.lookup.possible_keys(self.lookup.rules, states)
        best = max(sorted(keys), key=len) if keys else ""
        predicted = self.lookup.rules.get(best) if best else None
        if loop:
            unhappy = self.lookup.possible_keys(self.lookup.loop_unhappy, states)
            conditions = {self.lookup.loop_unhappy[k] for k in unhappy}
            if predicted == ACTION_LISTEN and not _loop_name(self.lookup.states_of(best)[-1]):
                if DO_NOT_PREDICT_LOOP_ACTION not in conditions:
                    return _Prediction(loop, best)
                predicted = None
        source = best or _feature_key(states)
        if predicted is None and is_rule:
            fallback = self.options.core_fallback_action_name if self.options.enable_fallback_prediction else ACTION_LISTEN
            return _Prediction(fallback, source)
        return _Prediction(predicted, source)

    def predict_with_rejection(self, events: list[_Event], is_rule: bool, gold: str) -> _Prediction:
        """Rasa's ``_predicted_action_name``: a predicted loop the data does not run counts as rejected."""
        prediction = self.predict(events, is_rule)
        played_loop = _current_loop(events)
        if played_loop and prediction.action != gold and prediction.action == played_loop:
            events.append(_Rejected(played_loop))
            prediction = self.predict(events, is_rule)
        return prediction


def _current_loop(events: Sequence[_Event]) -> str | None:
    loop = None
    for event in events:
        if isinstance(event, _Loop):
            loop = event.name
    return None if loop == SHOULD_NOT_BE_SET else loop


# -------------------------------------------------------------------- checks


@dataclass(frozen=True)
class _Finding:
    tracker: _Tracker
    gold: str
    predicted: str
    rules: tuple[str, ...]
    location: Location | None


def _predictable_actions(tracker: _Tracker) -> Iterator[tuple[int, str]]:
    """``(index, action)`` of every action Rasa predicts: not the first, nor one right after ``...``."""
    unpredictable = True
    for index, event in enumerate(tracker.events):
        if not isinstance(event, _Action):
            continue
        if event.name == RULE_SNIPPET_ACTION:
            unpredictable = True
            continue
        if unpredictable:
            unpredictable = False
            continue
        yield index, event.name


def _run(policy: _Policy, trackers: Sequence[_Tracker], known: dict[str, list[tuple[str, str]]],
         findings: list[_Finding] | None) -> None:
    """One of Rasa's two passes: collect into ``known`` which rules give which prediction
    (``findings=None``), or check every tracker against them."""
    collect = findings is None
    for tracker in trackers:
        running: list[_Event] = []
        predictable = dict(_predictable_actions(tracker))
        for index, event in enumerate(tracker.events):
            if index not in predictable:
                running.append(event)
                continue
            gold = predictable[index]
            predicted, source = policy.predict_with_rejection(running, tracker.is_rule, gold)
            if collect:
                if source is not None:
                    name, action = tracker.name, gold
                    if source.startswith(DEFAULT_RULES) or source.startswith(LOOP_RULES):
                        name, action = source, predicted or gold
                    known.setdefault(source, []).append((name, action))
            elif predicted and source and predicted != gold:
                if _should_delete(policy.lookup, source, tracker, predicted):
                    policy.lookup.rules.pop(source, None)
                    policy.lookup.dropped.add(source)
                else:
                    culprits = tuple(sorted({name for name, action in known.get(source, []) if action != gold}))
                    if culprits and findings is not None:
                        findings.append(_Finding(tracker, gold, predicted, culprits, tracker.locations[index]))
            running.append(event)


def _should_delete(lookup: RuleLookup, source: str, tracker: _Tracker, predicted: str) -> bool:
    """Rasa drops a rule's one-state ``action_listen`` when a story goes on and the rule has a longer sibling."""
    if tracker.is_rule or source.count("prev_action") > 1 or predicted != ACTION_LISTEN:
        return False
    return any(key.startswith(source[:-2]) and key != source for key in lookup.rules)


def _check_restriction(trackers: Sequence[_Tracker]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for tracker in trackers:
        users = [loc for e, loc in zip(tracker.events, tracker.locations) if isinstance(e, _User)]
        if len(users) > 1 and tracker.name not in seen:
            seen.add(tracker.name)
            problems.append(Problem(
                "error",
                f"rule '{tracker.name}'{_where(tracker.location)} contains {len(users)} user messages; "
                "Rasa's RulePolicy allows 1 (rules are not meant to hardcode a state machine)",
                users[1] or tracker.location,
                "write this conversation as a story, split the rule, or set 'restrict_rules: false' on RulePolicy",
                code="rule-too-long",
            ))
    return problems


def _fingerprints(trackers: Sequence[_Tracker], view: _DomainView) -> dict[str, tuple[set[str], set[str | None]]]:
    """Rasa's action fingerprints: slots (with features) and loops each action sets in the rules."""
    featurized = {s.name for s in view.slots}
    result: dict[str, tuple[set[str], set[str | None]]] = {}
    for tracker in trackers:
        action: str | None = None
        for event in tracker.events:
            if isinstance(event, _Action):
                action = event.name
            elif isinstance(event, _User):
                action = None
            elif action and isinstance(event, (_Slot, _Loop)):
                slots, loops = result.setdefault(action, (set(), set()))
                if isinstance(event, _Slot):
                    if event.name in featurized:
                        slots.add(event.name)
                else:
                    loops.add(event.name)
    return {a: f for a, f in result.items() if f[0] or f[1]} if result else {}


def _check_incomplete(trackers: Sequence[_Tracker], view: _DomainView, initial: Mapping[str, Any]) -> list[Problem]:
    fingerprints = _fingerprints(trackers, view)
    problems: list[Problem] = []
    if not fingerprints:
        return problems
    seen: set[str] = set()
    for tracker in trackers:
        applied = _applied_events(tracker.events)
        states = _replay(applied, view, omit_unset_slots=False, initial=initial).states
        action_locations = [loc for e, loc in zip(tracker.events, tracker.locations) if isinstance(e, _Action)]
        following = [s.get("prev_action", {}).get("action_name") for s in states[1:]] + [ACTION_LISTEN]
        for position, (state, next_action) in enumerate(zip(states, following)):
            previous = state.get("prev_action", {}).get("action_name")
            fingerprint = fingerprints.get(previous or "")
            if not previous or not fingerprint or RULE_SNIPPET_ACTION in (next_action, previous):
                continue
            expected_slots, expected_loops = fingerprint
            missing = sorted(expected_slots - set(state.get("slots", {})))
            loop = state.get("active_loop", {}).get("name")
            loops = set() if loop in expected_loops else expected_loops
            location = action_locations[position - 1] if 0 < position <= len(action_locations) else tracker.location
            if missing:
                message = (f"the action '{previous}' in rule '{tracker.name}' does not set some of the slots that it "
                           f"sets in other rules: slots not set in rule '{tracker.name}': '{', '.join(missing)}'")
                if message not in seen:
                    seen.add(message)
                    problems.append(Problem("error", message, location,
                                            "add the slot_was_set step after this action (null if it is not set here), "
                                            "or, if it is the rule's last action, add 'wait_for_user_input: false'",
                                            code="incomplete-rule"))
            if loops:
                names = sorted({"null" if n in (None, SHOULD_NOT_BE_SET) else str(n) for n in loops} | {previous})
                message = (f"the form '{previous}' in rule '{tracker.name}' does not set the 'active_loop' that it "
                           f"sets in other rules: '{', '.join(names)}'")
                if message not in seen:
                    seen.add(message)
                    problems.append(Problem("error", message, location,
                                            "add the active_loop step after this action, or, if it is the rule's last "
                                            "action, add 'wait_for_user_input: false'", code="incomplete-rule"))
    return problems


def _where(location: Location | None) -> str:
    return f" ({location})" if location else ""


@dataclass(frozen=True)
class RuleAnalysis:
    """What Rasa's RulePolicy makes of the data: its findings, and the rule keys it drops."""

    problems: tuple[Problem, ...] = ()
    #: keys (Rasa's JSON) of rules that listen after an action a story goes on from: Rasa learns no rule there
    dropped_keys: frozenset[str] = frozenset()


def check_rules(domain: Domain, stories: Sequence[Story], options: RuleCheckOptions | None = RuleCheckOptions()) -> tuple[Problem, ...]:
    """Every finding of Rasa's RulePolicy on these rules and stories (``options=None``: no RulePolicy, none)."""
    return analyze_rules(domain, stories, options).problems


def analyze_rules(domain: Domain, stories: Sequence[Story], options: RuleCheckOptions | None = RuleCheckOptions()) -> RuleAnalysis:
    """:func:`check_rules`' findings and the rule keys Rasa's RulePolicy drops while checking."""
    rules = [s for s in stories if s.is_rule]
    if options is None or not rules:
        return RuleAnalysis()
    view = _DomainView.of(domain)
    initial = _initial_values(domain)
    rule_trackers = [t for rule in rules for t in _rule_trackers(rule, view)]
    problems: list[Problem] = []
    if options.restrict_rules:
        problems.extend(_check_restriction(rule_trackers))
    if not options.check_for_contradictions:
        return RuleAnalysis(tuple(problems))
    problems.extend(_check_incomplete(rule_trackers, view, initial))
    story_trackers = _story_trackers([s for s in stories if not s.is_rule and s.kind != "test"], view)
    lookup = _build_lookup(rule_trackers, story_trackers, view, initial)
    policy = _Policy(lookup, view, options, initial)
    sources: dict[str, list[tuple[str, str]]] = {}
    _run(policy, rule_trackers, sources, None)
    findings: list[_Finding] = []
    _run(policy, [*story_trackers, *rule_trackers], sources, findings)
    rule_locations: dict[str, Location | None] = {}
    for rule in rules:
        rule_locations.setdefault(rule.name, rule.location)
    seen: set[tuple[str, str, str, tuple[str, ...]]] = set()
    for finding in findings:
        key = (finding.tracker.name, finding.gold, finding.predicted, finding.rules)
        if key in seen:
            continue
        seen.add(key)
        kind = "rule" if finding.tracker.is_rule else "story"
        culprits = ", ".join(f"'{name}'{_where(rule_locations.get(name))}" for name in finding.rules)
        message = (f"the prediction of the action '{finding.gold}' in {kind} '{finding.tracker.name}'"
                   f"{_where(finding.tracker.location)} is contradicting with rule(s) {culprits}")
        if finding.predicted != options.core_fallback_action_name:
            message += f" which predicted action '{finding.predicted}'"
        problems.append(Problem("error", message, finding.location, _HINT_CONTRADICTION,
                                code="rule-contradiction" if finding.tracker.is_rule else "rule-story-contradiction"))
    return RuleAnalysis(tuple(problems), frozenset(lookup.dropped))

