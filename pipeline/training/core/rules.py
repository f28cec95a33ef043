"""RulePolicy: rules as partial state sequences, default actions, the form happy path.

A rule becomes one lookup entry per action it contains: the partial states
before that action, and the action. A partial state (:class:`RuleState`)
constrains only what the rule says -- the previous action, the intent and
entities of a user step, slots from ``slot_was_set`` and the condition, the
active form -- and ``null`` values mean "must not be set". As in Rasa, a rule
that may apply mid-conversation starts after an implicit ``...``: its first
action is not predicted (a rule beginning with an action applies only after
that action ran), and two rules giving different actions for the same states
give no entry. An entry applies when its states match the last states of the
conversation (the first ones, for ``conversation_start`` rules); the entry
with the longest Rasa key wins.

Before the rules, Rasa's default actions (``/restart``, ``/back``,
``/session_start``) and the form happy path: while a form is active and was
not rejected, predict the form, and ``action_listen`` right after it ran.
When the form was rejected and a rule that says nothing about forms would
listen after its action, the form is predicted instead (back to the form).

The checks Rasa runs when it trains (contradictions, incomplete rules, rules
with several user messages) are :mod:`pipeline.rule_check`'s, the same that
``deltatrain data validate`` runs; :meth:`RulePolicy.train` refuses to train
when they found an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from pipeline.errors import Problem, TrainingError
from pipeline.rule_check import DEFAULT_ACTION_MAPPINGS, DO_NOT_PREDICT_LOOP_ACTION, LOOP_WAS_INTERRUPTED
from pipeline.rule_check import SHOULD_NOT_BE_SET as RASA_SHOULD_NOT_BE_SET

from .ensemble import PolicyOutput
from .settings import RuleSettings
from .states import DomainSpec, Replay, State, base_intent
from .stories import Trajectory
from .tracker import ACTION_LISTEN, ActionExecuted, ActiveLoop, Event, SlotSet, UserUttered

__all__ = [
    "SHOULD_NOT_BE_SET",
    "RuleState",
    "RuleEntry",
    "RulePolicy",
    "LOOP_HAPPY_PATH",
    "DEFAULT_ACTION",
    "build_rule_entries",
    "build_loop_unhappy_entries",
    "rasa_key",
    "rasa_key_length",
]

#: A rule's ``slot: null`` / ``active_loop: null``: the slot or form must not be set.
SHOULD_NOT_BE_SET = "__should_not_be_set__"
#: Source of a prediction made by the form happy path rather than a rule.
LOOP_HAPPY_PATH = "loop happy path"
#: Source of a prediction made by one of Rasa's default intents (``restart``, ``back``, ``session_start``).
DEFAULT_ACTION = "default action"


class RuleState(NamedTuple):
    """A partial state: ``None`` fields are unconstrained."""

    prev_action: str | None
    intent: str | None
    entities: tuple[str, ...] | None
    slots: tuple[tuple[str, Any], ...]  # features, or SHOULD_NOT_BE_SET
    active_loop: str | None  # a form, SHOULD_NOT_BE_SET, or None (any)

    def matches(self, state: State) -> bool:
        """Whether the conversation state has every feature this partial state asks for."""
        if self.prev_action is not None and self.prev_action != state.prev_action:
            return False
        if self.intent is not None and self.intent != state.intent:
            return False
        if self.entities is not None and self.entities != state.entities:
            return False
        if self.slots:
            present = dict(state.slots)
            for name, features in self.slots:
                if features == SHOULD_NOT_BE_SET:
                    if name in present:
                        return False
                elif present.get(name) != features:
                    return False
        if self.active_loop is not None:
            expected = None if self.active_loop == SHOULD_NOT_BE_SET else self.active_loop
            if state.active_loop != expected:
                return False
        return True

    @property
    def size(self) -> int:
        """Number of constrained features (how specific the state is)."""
        return (
            (self.prev_action is not None)
            + (self.intent is not None)
            + (len(self.entities) if self.entities is not None else 0)
            + len(self.slots)
            + (self.active_loop is not None)
        )

    def to_json(self) -> list[Any]:
        return [
            self.prev_action,
            self.intent,
            None if self.entities is None else list(self.entities),
            [[name, features if features == SHOULD_NOT_BE_SET else list(features)] for name, features in self.slots],
            self.active_loop,
        ]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> "RuleState":
        return cls(
            prev_action=data[0],
            intent=data[1],
            entities=None if data[2] is None else tuple(data[2]),
            slots=tuple((name, f if f == SHOULD_NOT_BE_SET else tuple(f)) for name, f in data[3]),
            active_loop=data[4],
        )


@dataclass(frozen=True)
class RuleEntry:
    """One lookup entry: after these partial states, run ``action``."""

    states: tuple[RuleState, ...]
    action: str
    conversation_start: bool
    sources: tuple[str, ...]  # names of the rules that give this entry

    @cached_property
    def rank(self) -> tuple[int, int, int, int]:
        """Rasa picks the matching rule with the longest key (its JSON); then longer, more specific entries."""
        return (
            rasa_key_length(self.states, self.conversation_start),
            len(self.states),
            sum(s.size for s in self.states),
            int(self.conversation_start),
        )

    def applies(self, history: Sequence[State]) -> bool:
        n = len(self.states)
        if n > len(history) or (self.conversation_start and n != len(history)):
            return False
        offset = len(history) - n
        return all(self.states[i].matches(history[offset + i]) for i in range(n - 1, -1, -1))

    def to_json(self) -> dict[str, Any]:
        return {
            "states": [s.to_json() for s in self.states],
            "action": self.action,
            "conversation_start": self.conversation_start,
            "sources": list(self.sources),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RuleEntry":
        return cls(
            states=tuple(RuleState.from_json(s) for s in data["states"]),
            action=data["action"],
            conversation_start=bool(data["conversation_start"]),
            sources=tuple(data["sources"]),
        )


def rasa_key_length(states: Sequence[RuleState], conversation_start: bool) -> int:
    """Length of the JSON key Rasa's RulePolicy stores for these partial states (its tie-breaker)."""
    return len(rasa_key(states, conversation_start))


def rasa_key(states: Sequence[RuleState], conversation_start: bool) -> str:
    """The JSON key Rasa's RulePolicy stores for these partial states (:mod:`pipeline.rule_check`'s keys)."""
    rasa_states: list[dict[str, Any]] = [{}] if conversation_start else []
    for state in states:
        rasa_state: dict[str, Any] = {}
        if state.prev_action is not None:
            rasa_state["prev_action"] = {"action_name": state.prev_action}
        user: dict[str, Any] = {}
        if state.intent is not None:
            user["intent"] = state.intent
        if state.entities:
            user["entities"] = list(state.entities)
        if user:
            rasa_state["user"] = user
        if state.slots:
            rasa_state["slots"] = {
                name: RASA_SHOULD_NOT_BE_SET if f == SHOULD_NOT_BE_SET else list(f) for name, f in state.slots
            }
        if state.active_loop is not None:
            loop = RASA_SHOULD_NOT_BE_SET if state.active_loop == SHOULD_NOT_BE_SET else state.active_loop
            rasa_state["active_loop"] = {"name": loop}
        rasa_states.append(rasa_state)
    return json.dumps(rasa_states, sort_keys=True)


def _slot_constraint(spec: DomainSpec, name: str, value: Any) -> Any | None:
    """A rule's constraint for ``slot: value``; ``None`` when the slot is not featurized."""
    slot = spec.slot(name)
    if slot is None:
        return None
    if value is None:
        # Rasa 3.6 wraps a list slot's "not set" marker into a list, so that ``items: null``
        # in a rule asks for a set list slot; kept so that the rules behave as in Rasa
        return slot.featurize(["null"]) if slot.type == "list" else SHOULD_NOT_BE_SET
    features = slot.featurize(value)
    return features if any(features) else None


def build_rule_entries(rule: Trajectory, spec: DomainSpec) -> list[tuple[tuple[RuleState, ...], str, int]]:
    """``(partial states, action, event position)`` for every action of a rule."""
    prev: str | None = ACTION_LISTEN if rule.conversation_start else None
    intent: str | None = None
    entities: tuple[str, ...] | None = None
    slots: dict[str, Any] = {}
    loop: str | None = None
    states: list[RuleState] = []
    result = []

    def apply(event: Event) -> None:
        nonlocal loop
        if isinstance(event, SlotSet):
            constraint = _slot_constraint(spec, event.name, event.value)
            if constraint is None:
                slots.pop(event.name, None)
            else:
                slots[event.name] = constraint
        elif isinstance(event, ActiveLoop):
            loop = event.name or SHOULD_NOT_BE_SET

    for event in rule.condition:
        apply(event)
    for position, event in enumerate(rule.events):
        if isinstance(event, UserUttered):
            prev = ACTION_LISTEN
            intent = base_intent(event.intent)
            featurized = spec.featurized_entities(event.intent, event.entities)
            entities = featurized if featurized else None
            for slot in spec.slots_for_entities(event.entities):  # as Rasa's explicit_events
                apply(slot)
        elif isinstance(event, ActionExecuted):
            if prev is not None:  # a rule's first action after "..." is not predicted, as in Rasa
                states.append(RuleState(prev, intent, entities, tuple(sorted(slots.items())), loop))
                result.append((tuple(states), event.name, position))
            prev = event.name
        else:
            apply(event)
    return result


def build_loop_unhappy_entries(
    rules: Sequence[Trajectory], stories: Sequence[Replay], spec: DomainSpec
) -> list[RuleEntry]:
    """Rasa's ``rules_for_loop_unhappy_path``: for each action taken while a form is active, the
    previous action and the state, marked when the form runs right after the user spoke
    (``LOOP_WAS_INTERRUPTED``) or something else runs after a bot action (``DO_NOT_PREDICT_LOOP_ACTION``)."""
    examples: list[tuple[tuple[RuleState, ...], str]] = []
    for rule in rules:
        examples.extend((states, action) for states, action, _ in build_rule_entries(rule, spec))
    for played in stories:
        full = tuple(RuleState(s.prev_action, s.intent, s.entities or None, s.slots, s.active_loop) for s in played.states)
        examples.extend((full[: k + 1], action) for k, action in enumerate(played.actions))
    marks: dict[tuple[RuleState, ...], str] = {}
    for states, action in examples:
        last = states[-1]
        loop = last.active_loop
        if loop is None or loop == SHOULD_NOT_BE_SET:
            continue
        before = states[-2].prev_action if len(states) > 1 else None
        key = (RuleState(before, None, None, (), None), last) if before else (last,)
        if last.prev_action == ACTION_LISTEN and action == loop:
            marks[key] = LOOP_WAS_INTERRUPTED
        elif last.prev_action != ACTION_LISTEN and action != loop:
            marks[key] = DO_NOT_PREDICT_LOOP_ACTION
    return [RuleEntry(key, mark, False, ()) for key, mark in marks.items()]


class RulePolicy:
    """Rasa's RulePolicy: a lookup of rule entries plus the form happy path."""

    name = "RulePolicy"

    def __init__(
        self, settings: RuleSettings, entries: Sequence[RuleEntry], loop_unhappy: Sequence[RuleEntry] = ()
    ) -> None:
        self.settings = settings
        self.entries = tuple(sorted(entries, key=lambda e: tuple(-r for r in e.rank)))
        #: Rasa's loop-unhappy-path lookup: after these states, the data does (not) run the active form
        self.loop_unhappy = tuple(loop_unhappy)
        self._by_prev: dict[str | None, list[RuleEntry]] = {}
        for entry in self.entries:
            self._by_prev.setdefault(entry.states[-1].prev_action, []).append(entry)

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        settings: RuleSettings,
        rules: Sequence[Trajectory],
        spec: DomainSpec,
        problems: Sequence[Problem] = (),
        stories: Sequence[Replay] = (),
        dropped_keys: frozenset[str] = frozenset(),
    ) -> "RulePolicy":
        """Build the lookup from rules; raise TrainingError when Rasa's checks found ``problems``.

        ``problems`` and ``dropped_keys`` come from :func:`pipeline.rule_check.analyze_rules`
        on the same rules and stories: the checks ``deltatrain data validate`` runs, so that
        what it accepts trains, and what Rasa refuses (``InvalidRule``) is refused here; the
        entries Rasa drops while checking (a rule's ``action_listen`` after an action that a
        story goes on from) are left out as in Rasa.
        """
        if not spec.has_action(settings.core_fallback_action_name):
            raise TrainingError(
                f"RulePolicy: core_fallback_action_name '{settings.core_fallback_action_name}' is not an action "
                "of the domain",
                hint="add the action to domain.yml or set core_fallback_action_name to action_default_fallback",
            )
        errors = [p for p in problems if p.is_error]
        if errors:
            raise TrainingError(
                f"contradicting or incomplete rules found ({len(errors)}):\n"
                + "\n".join(f"- {p.location}: {p.message}" if p.location else f"- {p.message}" for p in errors),
                location=errors[0].location,
                hint=errors[0].hint,
            )
        first: dict[tuple[tuple[RuleState, ...], bool], str] = {}
        sources: dict[tuple[tuple[RuleState, ...], bool], list[str]] = {}
        ambiguous: set[tuple[tuple[RuleState, ...], bool]] = set()
        for rule in rules:
            for states, action, _ in build_rule_entries(rule, spec):
                key = (states, rule.conversation_start)
                if key in ambiguous:
                    continue
                if first.setdefault(key, action) != action:
                    # two rules, same states, different actions: Rasa keeps neither
                    ambiguous.add(key)
                    del first[key]
                    continue
                if rule.name not in sources.setdefault(key, []):
                    sources[key].append(rule.name)
        entries = [
            RuleEntry(k[0], a, k[1], tuple(sources[k]))
            for k, a in first.items()
            if not (a == ACTION_LISTEN and rasa_key(k[0], k[1]) in dropped_keys)
        ]
        return cls(settings, entries, build_loop_unhappy_entries(rules, stories, spec))

    # ---------------------------------------------------------------- prediction

    def find(self, history: Sequence[State], rejected: bool = False) -> tuple[str | None, Any]:
        """The action the rules predict and its source (an entry or the happy path), or ``(None, None)``."""
        last = history[-1]
        if last.prev_action == ACTION_LISTEN and last.intent in DEFAULT_ACTION_MAPPINGS:
            return DEFAULT_ACTION_MAPPINGS[last.intent], DEFAULT_ACTION
        loop = last.active_loop
        if loop and not rejected:
            return (loop if last.prev_action != loop else ACTION_LISTEN), LOOP_HAPPY_PATH
        candidates = self._by_prev.get(last.prev_action, []), self._by_prev.get(None, [])
        best: RuleEntry | None = None
        for group in candidates:
            for entry in group:
                if best is not None and entry.rank <= best.rank:
                    break  # groups are sorted by rank
                if rejected and loop and entry.action == loop:
                    continue  # the form just rejected; rules must not run it again
                if entry.applies(history):
                    best = entry
                    break
        if best is None:
            return None, None
        if loop and best.action == ACTION_LISTEN and best.states[-1].active_loop is None:
            # a general rule (one that says nothing about forms) ran inside the form:
            # instead of listening, go back to the form (Rasa's loop unhappy path) --
            # unless the data runs something else than the form here: then no rule applies
            if any(e.action == DO_NOT_PREDICT_LOOP_ACTION and e.applies(history) for e in self.loop_unhappy):
                return None, None
            return loop, best
        return best.action, best

    def predict(self, history: Sequence[State], spec: DomainSpec, rejected: bool = False) -> PolicyOutput | None:
        """Probabilities: 1.0 for the rule's action, else the fallback at the threshold."""
        action, _ = self.find(history, rejected)
        probabilities = np.zeros(len(spec.actions), dtype=np.float64)
        if action is not None and spec.has_action(action):
            probabilities[spec.action_index(action)] = 1.0
        elif self.settings.enable_fallback_prediction:
            probabilities[spec.action_index(self.settings.core_fallback_action_name)] = self.settings.core_fallback_threshold
        else:
            return None
        return PolicyOutput(self.name, self.settings.priority, probabilities)

    # ---------------------------------------------------------------- persistence

    def to_json(self) -> dict[str, Any]:
        return {"entries": [e.to_json() for e in self.entries], "loop_unhappy": [e.to_json() for e in self.loop_unhappy]}

    @classmethod
    def from_json(cls, settings: RuleSettings, data: Mapping[str, Any]) -> "RulePolicy":
        return cls(
            settings,
            [RuleEntry.from_json(e) for e in data["entries"]],
            [RuleEntry.from_json(e) for e in data.get("loop_unhappy", [])],
        )
