"""Dialogue states: what the policies see at each turn, and its feature vectors.

A :class:`State` is Rasa's state dict as a hashable tuple, taken just before
each action::

    State(prev_action="action_listen", intent="book_flight", entities=("city", "city#to"),
          slots=(("destination", (1.0,)),), active_loop=None)

* ``prev_action``: the last action run (``action_listen`` at the start).
* ``intent``/``entities``: the latest user message. As in Rasa they stay in the
  state after bot actions; the ML policy only featurizes them right after
  ``action_listen`` (a fresh user turn).
* ``entities``: entity types, plus ``type#role`` and ``type#group``, filtered by
  the intent's ``use_entities``/``ignore_entities`` and by entities that do
  not influence the conversation.
* ``slots``: featurized values of slots that influence the conversation; a
  slot whose features are all zero (unset) is left out, as in Rasa. A user turn
  also sets the slots its entities fill through ``from_entity`` mappings (outside
  forms), as Rasa's ``StoryStep.explicit_events`` does for training and test
  stories (and ``action_extract_slots`` in a live conversation).
* ``active_loop``: the active form, if any.

``- action: restart`` in a story is no action: Rasa's story reader reads the event
type name ``restart`` as a ``Restarted`` event (:data:`RESTART_EVENT`; ``action_restart``
stays an action). Its training data generator ends the conversation there and goes on
with a fresh one (no slots, no form, no history before the restart), so :func:`replay`
does the same: a history never reaches back across a restart.

States are built from the events Rasa *applies* (``DialogueStateTracker.applied_events``):
when a form runs again on its happy path (no other action since the user spoke),
the user turn and the listen before it are undone, the form handled them. So the
policies never see them, and the form's re-run is no training example (RulePolicy's
happy path predicts it). A test predicts each action from the conversation so far
(:func:`replay_turn_by_turn`), as Rasa's partial tracker does.

:class:`DomainSpec` is the vocabulary derived from the domain (canonically
sorted so that reordering the domain file changes nothing); it is saved with
the model and defines the feature layout of the ML policy:
``[prev action | intent | entities | slot features | active form]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence, TypeVar

import numpy as np

from pipeline.data.model import (
    DEFAULT_ACTIONS,
    DEFAULT_INTENTS,
    REQUESTED_SLOT,
    RESTART_EVENT,
    Domain,
    EntityValue,
    SlotDef,
    retrieval_action,
    thaw,
)
from pipeline.rule_check import fills_from_entity

from .tracker import ACTION_LISTEN, RULE_SNIPPET_ACTION, ActionExecuted, ActiveLoop, Event, SlotSet, UserUttered

__all__ = [
    "DEFAULT_INTENTS",
    "REQUESTED_SLOT",
    "ENTITY_LABEL_SEPARATOR",
    "OTHER_CATEGORY",
    "SlotFeature",
    "DomainSpec",
    "State",
    "Replay",
    "replay",
    "replay_turn_by_turn",
    "replay_predictions",
    "build_state_key",
    "base_intent",
    "retrieval_action",
    "entity_labels",
    "RESTART_EVENT",
]

#: ``city#to``: an entity type with its role (or group), as Rasa featurizes it.
ENTITY_LABEL_SEPARATOR = "#"
#: Categorical slots get this extra value for anything not listed, as in Rasa 3.
OTHER_CATEGORY = "__other__"

_FEATURIZED_TYPES = ("text", "bool", "categorical", "float", "list")


def base_intent(intent: str | None) -> str | None:
    """``chitchat`` for the retrieval intent ``chitchat/ask_name``."""
    return intent.split("/", 1)[0] if intent else intent


def parse_bool(value: Any) -> bool | None:
    """Rasa's ``bool_from_any``; ``None`` when the value is not a boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "y", "on"):
            return True
        if lowered in ("false", "0", "no", "n", "off"):
            return False
    return None


@dataclass(frozen=True)
class SlotFeature:
    """How one slot that influences the conversation is featurized."""

    name: str
    type: str
    values: tuple[str, ...] = ()  # categorical: lower-cased values + OTHER_CATEGORY
    min_value: float = 0.0
    max_value: float = 1.0
    initial_value: Any = None

    @property
    def dim(self) -> int:
        return len(self.values) if self.type == "categorical" else 2 if self.type in ("bool", "float") else 1

    def check_value(self, value: Any) -> str | None:
        """Why ``value`` cannot be this slot's value, or ``None`` when it can."""
        if value is None:
            return None
        if self.type == "bool" and parse_bool(value) is None:
            return f"bool slot '{self.name}' cannot be {value!r}"
        if self.type == "float":
            try:
                float(value)
            except (TypeError, ValueError):
                return f"float slot '{self.name}' cannot be {value!r}"
        return None

    def featurize(self, value: Any) -> tuple[float, ...]:
        """Rasa's ``Slot.as_feature`` for this slot's type (zeros when unset)."""
        features = [0.0] * self.dim
        if value is None:
            return tuple(features)
        if self.type == "text":
            features[0] = 1.0
        elif self.type == "list":
            features[0] = 1.0 if isinstance(value, (list, tuple)) and len(value) else 0.0
        elif self.type == "bool":
            parsed = parse_bool(value)
            if parsed is not None:
                features = [1.0, 1.0 if parsed else 0.0]
        elif self.type == "float":
            try:
                number = float(value)
            except (TypeError, ValueError):
                return tuple(features)
            capped = max(self.min_value, min(self.max_value, number))
            span = abs(self.max_value - self.min_value) or 1.0
            # Rasa's FloatSlot: "is set" first, so a value at min_value differs from no value
            features = [1.0, (capped - self.min_value) / span]
        elif self.type == "categorical":
            lowered = str(value).lower()
            index = self.values.index(lowered) if lowered in self.values else self.values.index(OTHER_CATEGORY)
            features[index] = 1.0
        return tuple(features)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "values": list(self.values),
            "min_value": self.min_value,
            "max_value": self.max_value,
            "initial_value": thaw(self.initial_value),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SlotFeature":
        return cls(
            name=data["name"],
            type=data["type"],
            values=tuple(data["values"]),
            min_value=float(data["min_value"]),
            max_value=float(data["max_value"]),
            initial_value=data["initial_value"],
        )

    @classmethod
    def from_slot(cls, slot: SlotDef) -> "SlotFeature":
        values: tuple[str, ...] = ()
        if slot.type == "categorical":
            lowered = [str(v).lower() for v in slot.values]
            values = tuple(dict.fromkeys([*lowered, OTHER_CATEGORY]))
        return cls(
            name=slot.name,
            type=slot.type,
            values=values,
            min_value=float(slot.min_value),
            max_value=float(slot.max_value),
            initial_value=thaw(slot.initial_value),
        )


class State(NamedTuple):
    """What a policy sees before an action (see the module docstring)."""

    prev_action: str
    intent: str | None
    entities: tuple[str, ...]
    slots: tuple[tuple[str, tuple[float, ...]], ...]
    active_loop: str | None

    @property
    def is_user_turn(self) -> bool:
        """True right after ``action_listen``: the user has just spoken."""
        return self.prev_action == ACTION_LISTEN and self.intent is not None


def build_state_key(states: Sequence[State]) -> str:
    """Canonical JSON of a state sequence (a lookup key of rules and memoization)."""
    return json.dumps([list(s) for s in states], separators=(",", ":"), sort_keys=True)


def entity_labels(entities: Iterable[EntityValue | Mapping[str, Any]]) -> set[str]:
    """``type``, ``type#role`` and ``type#group`` labels of entities."""
    labels: set[str] = set()
    for entity in entities:
        name: Any
        role: Any
        group: Any
        if isinstance(entity, EntityValue):
            name, role, group = entity.entity, entity.role, entity.group
        else:
            name, role, group = entity.get("entity"), entity.get("role"), entity.get("group")
        if not name:
            continue
        labels.add(str(name))
        for extra in (role, group):
            if extra:
                labels.add(f"{name}{ENTITY_LABEL_SEPARATOR}{extra}")
    return labels


@dataclass(frozen=True)
class DomainSpec:
    """The vocabulary of dialogue states, derived from the domain."""

    actions: tuple[str, ...]
    intents: tuple[str, ...]
    entities: tuple[str, ...]  # featurized labels (type, type#role, type#group)
    slots: tuple[SlotFeature, ...]  # slots that influence the conversation
    forms: tuple[str, ...]
    known_slots: tuple[str, ...]  # every slot name a story may set
    intent_entities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # restricted intents only
    #: ``(slot, entity, role, group)``: featurized slots a user turn's entities fill (``from_entity`` outside forms)
    entity_slots: tuple[tuple[str, str, str | None, str | None], ...] = ()
    _index: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update(
            actions={a: i for i, a in enumerate(self.actions)},
            intents={a: i for i, a in enumerate(self.intents)},
            entities={a: i for i, a in enumerate(self.entities)},
            forms={a: i for i, a in enumerate(self.forms)},
        )
        offset = 0
        slot_offsets = {}
        for slot in self.slots:
            slot_offsets[slot.name] = offset
            offset += slot.dim
        self._index["slot_offsets"] = slot_offsets
        self._index["slot_dims"] = offset
        self._index["slots"] = {s.name: s for s in self.slots}

    # ------------------------------------------------------------------ building

    @classmethod
    def from_domain(cls, domain: Domain) -> "DomainSpec":
        """The canonical vocabulary of ``domain`` (Rasa's default intents and actions included)."""
        custom = sorted(set(domain.action_names) - set(DEFAULT_ACTIONS))
        intents = sorted({base_intent(i.name) or "" for i in domain.intents} | set(DEFAULT_INTENTS))
        influencing = [e for e in domain.entities if e.influence_conversation]
        labels_of: dict[str, set[str]] = {}
        for entity in influencing:
            labels = {entity.name}
            labels.update(f"{entity.name}{ENTITY_LABEL_SEPARATOR}{r}" for r in entity.roles)
            labels.update(f"{entity.name}{ENTITY_LABEL_SEPARATOR}{g}" for g in entity.groups)
            labels_of[entity.name] = labels
        all_labels = sorted(set().union(*labels_of.values())) if labels_of else []
        intent_entities: dict[str, tuple[str, ...]] = {}
        for intent in domain.intents:
            if intent.use_entities is None and not intent.ignore_entities:
                continue
            used = set(labels_of) if intent.use_entities is None else set(intent.use_entities)
            used -= set(intent.ignore_entities)
            allowed = set().union(*(labels_of.get(name, set()) for name in used)) if used else set()
            intent_entities[base_intent(intent.name) or ""] = tuple(sorted(allowed))
        slots = tuple(
            SlotFeature.from_slot(s)
            for s in sorted(domain.slots, key=lambda s: s.name)
            if s.influence_conversation and s.type in _FEATURIZED_TYPES
        )
        featurized = {s.name for s in slots}
        entity_slots = tuple(
            (slot.name, str(mapping.get("entity")), mapping.get("role"), mapping.get("group"))
            for slot in domain.slots
            if slot.name in featurized
            for mapping in slot.mappings
            if fills_from_entity(mapping)
        )
        return cls(
            actions=(*DEFAULT_ACTIONS, *custom),
            intents=tuple(intents),
            entities=tuple(all_labels),
            slots=slots,
            forms=tuple(sorted(domain.form_names)),
            known_slots=tuple(sorted({*domain.slot_names, REQUESTED_SLOT})),
            intent_entities=intent_entities,
            entity_slots=entity_slots,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "actions": list(self.actions),
            "intents": list(self.intents),
            "entities": list(self.entities),
            "slots": [s.to_json() for s in self.slots],
            "forms": list(self.forms),
            "known_slots": list(self.known_slots),
            "intent_entities": {k: list(v) for k, v in sorted(self.intent_entities.items())},
            "entity_slots": [list(m) for m in self.entity_slots],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DomainSpec":
        return cls(
            actions=tuple(data["actions"]),
            intents=tuple(data["intents"]),
            entities=tuple(data["entities"]),
            slots=tuple(SlotFeature.from_json(s) for s in data["slots"]),
            forms=tuple(data["forms"]),
            known_slots=tuple(data["known_slots"]),
            intent_entities={k: tuple(v) for k, v in data["intent_entities"].items()},
            entity_slots=tuple((m[0], m[1], m[2], m[3]) for m in data.get("entity_slots", ())),
        )

    # ------------------------------------------------------------------- lookups

    def action_index(self, name: str) -> int:
        return int(self._index["actions"][name])

    def has_action(self, name: str) -> bool:
        return name in self._index["actions"]

    def has_intent(self, name: str | None) -> bool:
        return base_intent(name) in self._index["intents"]

    def slot(self, name: str) -> SlotFeature | None:
        """The featurized slot ``name``, or ``None`` when it does not influence the conversation."""
        slot: SlotFeature | None = self._index["slots"].get(name)
        return slot

    def featurized_entities(self, intent: str | None, entities: Iterable[EntityValue | Mapping[str, Any]]) -> tuple[str, ...]:
        """Entity labels of a user turn that the domain lets influence the conversation."""
        labels = entity_labels(entities) & set(self._index["entities"])
        allowed = self.intent_entities.get(base_intent(intent) or "")
        if allowed is not None:
            labels &= set(allowed)
        return tuple(sorted(labels))

    def featurized_slots(self, values: Mapping[str, Any]) -> tuple[tuple[str, tuple[float, ...]], ...]:
        """``(name, features)`` of the slots whose features are not all zero."""
        result = []
        for slot in self.slots:
            features = slot.featurize(values.get(slot.name))
            if any(features):
                result.append((slot.name, features))
        return tuple(result)

    def slots_for_entities(self, entities: Iterable[EntityValue]) -> list[SlotSet]:
        """Rasa's ``Domain.slots_for_entities``: the slots a user turn's entities fill (the last value wins)."""
        found: dict[str, list[Any]] = {}
        entities = tuple(entities)
        for slot, entity, role, group in self.entity_slots:
            for value in entities:
                if value.entity == entity and value.role == role and value.group == group:
                    found.setdefault(slot, []).append("" if value.value is None else value.value)
        events = []
        for slot, values in found.items():
            feature = self.slot(slot)
            events.append(SlotSet(slot, values if feature is not None and feature.type == "list" else values[-1]))
        return events

    def initial_slot_values(self) -> dict[str, Any]:
        return {s.name: s.initial_value for s in self.slots if s.initial_value is not None}

    # ------------------------------------------------------------------ features

    @property
    def feature_size(self) -> int:
        slot_dims: int = self._index["slot_dims"]
        return len(self.actions) + len(self.intents) + len(self.entities) + slot_dims + len(self.forms)

    def encode(self, state: State) -> np.ndarray:
        """The feature vector of one state (user features only on a fresh user turn)."""
        vector = np.zeros(self.feature_size, dtype=np.float32)
        index = self._index
        offset = 0
        action = index["actions"].get(state.prev_action)
        if action is not None:
            vector[action] = 1.0
        offset += len(self.actions)
        if state.prev_action == ACTION_LISTEN:
            intent = index["intents"].get(base_intent(state.intent) or "")
            if intent is not None:
                vector[offset + intent] = 1.0
            for label in state.entities:
                position = index["entities"].get(label)
                if position is not None:
                    vector[offset + len(self.intents) + position] = 1.0
        offset += len(self.intents) + len(self.entities)
        for name, features in state.slots:
            start = index["slot_offsets"].get(name)
            slot = index["slots"].get(name)
            if start is not None and len(features) == slot.dim:
                vector[offset + start : offset + start + len(features)] = features
        offset += index["slot_dims"]
        form = index["forms"].get(state.active_loop or "")
        if form is not None:
            vector[offset + form] = 1.0
        return vector

    def encode_histories(self, histories: Sequence[Sequence[State]], max_history: int) -> tuple[np.ndarray, np.ndarray]:
        """``x [N, max_history, F]`` and ``mask [N, max_history]``; padding at the front."""
        x = np.zeros((len(histories), max_history, self.feature_size), dtype=np.float32)
        mask = np.zeros((len(histories), max_history), dtype=np.float32)
        cache: dict[State, np.ndarray] = {}
        for row, history in enumerate(histories):
            window = list(history)[-max_history:]
            start = max_history - len(window)
            for column, state in enumerate(window, start=start):
                vector = cache.get(state)
                if vector is None:
                    vector = cache[state] = self.encode(state)
                x[row, column] = vector
                mask[row, column] = 1.0
        return x, mask


@dataclass(frozen=True)
class Replay:
    """A conversation replayed into states: ``states[k]`` is the state before ``actions[k]``."""

    states: tuple[State, ...]
    actions: tuple[str, ...]
    event_index: tuple[int, ...]  # position of each action in the events; -1 for an inserted listen
    final: State  # the state after the last event: what the next action is predicted from
    #: turn by turn (:func:`replay_turn_by_turn`): the history before each action; else prefixes of ``states``
    histories: tuple[tuple[State, ...], ...] | None = None
    #: where in ``states`` a conversation starts again after a ``restart`` event (a history starts there)
    restarts: tuple[int, ...] = ()

    def _start(self, k: int) -> int:
        return max((r for r in self.restarts if r <= k), default=0)

    def history(self, k: int) -> tuple[State, ...]:
        """The states a policy sees when predicting ``actions[k]``."""
        return self.histories[k] if self.histories is not None else self.states[self._start(k): k + 1]

    @property
    def final_history(self) -> tuple[State, ...]:
        return self.states[self._start(len(self.states)):] + (self.final,)


def _explicit_events(events: Sequence[Event], spec: DomainSpec, start_action: str) -> list[tuple[int, Event]]:
    """Rasa's ``StoryStep.explicit_events``: listens before user turns, entity slots after them.

    Each event keeps its position in ``events`` (-1 for an inserted listen).
    """
    result: list[tuple[int, Event]] = []
    last = start_action
    for position, event in enumerate(events):
        if isinstance(event, UserUttered):
            if last not in (ACTION_LISTEN, RULE_SNIPPET_ACTION):
                result.append((-1, ActionExecuted(ACTION_LISTEN)))
            last = ACTION_LISTEN
            result.append((position, event))
            result.extend((position, slot) for slot in spec.slots_for_entities(event.entities))
            continue
        if isinstance(event, ActionExecuted):
            last = event.name
        result.append((position, event))
    return result


def _applied_events(events: Sequence[tuple[int, Event]]) -> list[tuple[int, Event]]:
    """Rasa's ``DialogueStateTracker.applied_events``: a form's happy-path re-run undoes the turns it handled."""
    loops = {e.name for _, e in events if isinstance(e, ActiveLoop) and e.name}
    applied: list[tuple[int, Event]] = []
    for pair in events:
        event = pair[1]
        if isinstance(event, ActionExecuted) and event.name in loops and not _first_loop_run(event.name, applied):
            _undo_till_previous_loop_run(event.name, applied)
        else:
            applied.append(pair)
    return applied


def _first_loop_run(loop: str, applied: Sequence[tuple[int, Event]]) -> bool:
    """Rasa's ``_first_loop_execution_or_unhappy_path``."""
    next_action: str | None = None
    for _, event in reversed(applied):
        if isinstance(event, ActiveLoop) and event.name is None:
            return True  # the form ended since: this run starts it again
        if isinstance(event, UserUttered) and next_action is not None and next_action != loop:
            return True  # something else than the form answered the user: unhappy path
        if isinstance(event, ActionExecuted):
            if event.name == loop:
                return False
            next_action = event.name
    return True


def _undo_till_previous_loop_run(loop: str, applied: list[tuple[int, Event]]) -> None:
    """Drop actions and user turns back to the form's previous run (slots and loop events stay)."""
    offset = 0
    for _, event in reversed(applied[:]):
        if isinstance(event, ActionExecuted) and event.name == loop:
            break
        if isinstance(event, (ActionExecuted, UserUttered)):
            del applied[-1 - offset]
        else:
            offset += 1


def _is_restart(event: Event) -> bool:
    return isinstance(event, ActionExecuted) and event.name == RESTART_EVENT


def replay(events: Sequence[Event], spec: DomainSpec, *, start_action: str = ACTION_LISTEN) -> Replay:
    """Replay ``events`` into states, as Rasa's tracker does (tolerant: unknown names just match nothing).

    ``start_action`` is the previous action at the start: ``action_listen`` for a
    conversation, :data:`RULE_SNIPPET_ACTION` for a rule that may apply mid-conversation.
    Entity-filled slots are set after each user turn and the form's happy-path turns are
    undone (see the module docstring); ``event_index`` points into ``events``. A
    ``restart`` event starts a fresh conversation (``restarts`` marks where).
    """
    cuts = [i for i, event in enumerate(events) if _is_restart(event)]
    if not cuts:
        return _replay_one(events, spec, start_action)
    states: list[State] = []
    actions: list[str] = []
    positions: list[int] = []
    restarts: list[int] = []
    played = None
    for begin, end in zip([0, *(c + 1 for c in cuts)], [*cuts, len(events)]):
        if played is not None:
            restarts.append(len(states))
        played = _replay_one(events[begin:end], spec, start_action if begin == 0 else ACTION_LISTEN)
        states.extend(played.states)
        actions.extend(played.actions)
        positions.extend(p + begin if p >= 0 else p for p in played.event_index)
    assert played is not None
    return Replay(tuple(states), tuple(actions), tuple(positions), played.final, restarts=tuple(restarts))


def _replay_one(events: Sequence[Event], spec: DomainSpec, start_action: str) -> Replay:
    """:func:`replay` of a conversation without restarts."""
    states: list[State] = []
    actions: list[str] = []
    positions: list[int] = []
    prev = start_action
    intent: str | None = None
    entities: tuple[str, ...] = ()
    slot_values: dict[str, Any] = spec.initial_slot_values()
    loop: str | None = None
    started = False
    slots_cache: list[Any] = [None]  # featurized slots, recomputed only after a slot changed

    def snapshot() -> State:
        if slots_cache[0] is None:
            slots_cache[0] = spec.featurized_slots(slot_values)
        return State(prev, intent, entities, slots_cache[0], loop)

    for position, event in _applied_events(_explicit_events(events, spec, start_action)):
        if isinstance(event, UserUttered):
            # a rule snippet ("...") listens silently before its first user turn, as in Rasa
            prev = ACTION_LISTEN
            intent = base_intent(event.intent)
            entities = spec.featurized_entities(event.intent, event.entities)
            started = True
        elif isinstance(event, ActionExecuted):
            if event.name == ACTION_LISTEN and not started and prev == ACTION_LISTEN:
                continue  # the conversation already starts by listening
            states.append(snapshot())
            actions.append(event.name)
            positions.append(position)
            prev = retrieval_action(event.name)  # utter_faq/ask_price (test stories) ran utter_faq
            started = True
        elif isinstance(event, SlotSet):
            slot_values[event.name] = event.value
            slots_cache[0] = None
        elif isinstance(event, ActiveLoop):
            loop = event.name
    return Replay(tuple(states), tuple(actions), tuple(positions), snapshot())


def replay_turn_by_turn(events: Sequence[Event], spec: DomainSpec) -> Replay:
    """Every action of ``events``, each with the history of the conversation *so far* (Rasa's story test).

    Unlike :func:`replay` of the whole conversation, a form's happy-path re-run and the
    user turn before it are predicted too: when the form runs again, the turn is still in
    the tracker. ``history(k)`` is what a running assistant would have seen before ``actions[k]``.
    """
    whole = replay(events, spec)
    explicit = _explicit_events(events, spec, ACTION_LISTEN)
    if len(_applied_events(explicit)) == len(explicit) and not whole.restarts:
        return whole  # nothing undone: the whole replay's prefixes are the turn-by-turn histories
    histories: list[tuple[State, ...]] = []
    actions: list[str] = []
    positions: list[int] = []
    started = False
    for i, (position, event) in enumerate(explicit):
        if isinstance(event, UserUttered):
            started = True
        if _is_restart(event):
            started = False  # a fresh conversation, which starts by listening again
            continue
        if not isinstance(event, ActionExecuted) or (event.name == ACTION_LISTEN and not started):
            continue  # a leading listen: the conversation already starts by listening
        started = True
        # an inserted listen (-1) comes right before the user turn it listens for
        end = position if position >= 0 else explicit[i + 1][0]
        histories.append(replay(events[:end], spec).final_history)
        actions.append(event.name)
        positions.append(position)
    return Replay(tuple(h[-1] for h in histories), tuple(actions), tuple(positions), whole.final, tuple(histories))


_Prediction = TypeVar("_Prediction")


def replay_predictions(
    played: Replay, predict: Callable[[int, tuple[State, ...], bool], tuple[str | None, _Prediction]]
) -> list[tuple[int, str, str | None, _Prediction]]:
    """Predict every action of a replayed conversation as Rasa's story test does.

    ``predict(k, history, form_rejected)`` returns the predicted action name and
    whatever else the caller needs. When the active form is predicted but the
    conversation runs something else, the form counts as rejected -- until it
    runs again or another form becomes active -- and the prediction is made
    again (Rasa's ``emulate_loop_rejection``). Returns ``(k, gold, predicted, extra)``.
    """
    results = []
    rejected = False
    for k, gold in enumerate(played.actions):
        history = played.history(k)
        active = history[-1].active_loop
        predicted, extra = predict(k, history, rejected)
        if active and predicted == active and predicted != gold:
            rejected = True
            predicted, extra = predict(k, history, True)
        results.append((k, gold, predicted, extra))
        following = played.states[k + 1] if k + 1 < len(played.states) else played.final
        if gold == active or following.active_loop != active:
            rejected = False
    return results
