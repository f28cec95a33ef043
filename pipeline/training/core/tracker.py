"""Conversation events and the tracker state the dialogue policy predicts from.

A conversation is a tuple of four kinds of events, mirroring Rasa's::

    UserUttered(intent, entities, text)   the user said something (NLU result)
    ActionExecuted(name)                  the bot ran an action (or uttered a response)
    SlotSet(name, value)                  a slot was set (``value=None`` resets it)
    ActiveLoop(name)                      a form became active (``name=None``: it ended)

The conversation starts waiting for the user, as if ``action_listen`` had just
run. Before every user turn that follows a bot action there is an
``ActionExecuted("action_listen")``; the helpers here insert it, and state
building (:mod:`.states`) inserts it too when a caller left it out, so both
spellings of a conversation predict the same.

Build a tracker from story steps with :meth:`TrackerState.from_steps`, or turn
by turn::

    tracker = TrackerState().with_user("greet").with_action("utter_greet").with_user("bye")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, Union

from pipeline.data.model import (
    ActionStep,
    ActiveLoopStep,
    CheckpointStep,
    EntityValue,
    OrStep,
    SlotStep,
    Step,
    Story,
    UserStep,
)
from pipeline.errors import ModelError, TrainingError

__all__ = [
    "ACTION_LISTEN",
    "RULE_SNIPPET_ACTION",
    "UserUttered",
    "ActionExecuted",
    "SlotSet",
    "ActiveLoop",
    "Event",
    "TrackerState",
    "events_from_steps",
    "with_listens",
]

#: The action that waits for the next user message.
ACTION_LISTEN = "action_listen"
#: Rasa's marker for "anything may have happened before" at the start of a rule.
RULE_SNIPPET_ACTION = "..."


@dataclass(frozen=True)
class UserUttered:
    """The user said something: the intent and entities NLU found, and the text."""

    intent: str | None
    entities: tuple[EntityValue, ...] = ()
    text: str | None = None

    @classmethod
    def from_parse(cls, result: Any, *, text: str | None = None) -> "UserUttered":
        """The user turn of a Rasa-shaped NLU parse result; ModelError when it is not one.

        ``{"text": ..., "intent": {"name": ..., "confidence": ...}, "entities": [{"entity": ..., "value": ...}]}``
        """
        text = text if text is not None else (result.get("text") if isinstance(result, Mapping) else None)

        def refuse(what: str) -> ModelError:
            return ModelError(
                f"the NLU parse of {text!r} {what}; received {result!r}",
                hint='parse must return a dict like {"intent": {"name": "greet", "confidence": 0.9}, "entities": [...]}',
            )

        if not isinstance(result, Mapping):
            raise refuse("is not a mapping")
        intent = result.get("intent")
        if intent is not None and not isinstance(intent, Mapping):
            raise refuse("has an 'intent' that is not a mapping")
        name = intent.get("name") if intent else None
        if name is not None and not isinstance(name, str):
            raise refuse("has an intent name that is not a string")
        raw = result.get("entities") or []
        if not isinstance(raw, (list, tuple)) or not all(isinstance(e, Mapping) and "entity" in e for e in raw):
            raise refuse("has 'entities' that are not a list of mappings with an 'entity' key")
        entities = tuple(EntityValue(str(e["entity"]), e.get("value"), e.get("role"), e.get("group")) for e in raw)
        return cls(name, entities, text)


@dataclass(frozen=True)
class ActionExecuted:
    """The bot ran an action, uttered a response or ran a form."""

    name: str


@dataclass(frozen=True)
class SlotSet:
    """A slot was set to ``value``; ``None`` resets it."""

    name: str
    value: Any = None


@dataclass(frozen=True)
class ActiveLoop:
    """A form (loop) became active; ``name=None``: the active form ended."""

    name: str | None


Event = Union[UserUttered, ActionExecuted, SlotSet, ActiveLoop]


def _entity(value: EntityValue | str) -> EntityValue:
    return value if isinstance(value, EntityValue) else EntityValue(str(value))


@dataclass(frozen=True)
class TrackerState:
    """A conversation so far, as events; the input of ``CoreModel.predict_next_action``."""

    events: tuple[Event, ...] = ()

    # ------------------------------------------------------------------ building

    def with_events(self, *events: Event) -> "TrackerState":
        """A new tracker with ``events`` appended as given (no listen inserted)."""
        return TrackerState(self.events + tuple(events))

    def with_user(
        self,
        intent: str | None,
        entities: Sequence[EntityValue | str] = (),
        text: str | None = None,
    ) -> "TrackerState":
        """Append a user turn, preceded by ``action_listen`` when the bot spoke last."""
        return TrackerState(with_listens(self.events + (UserUttered(intent, tuple(_entity(e) for e in entities), text),)))

    def with_parse(self, result: Mapping[str, Any]) -> "TrackerState":
        """Append the user turn of a Rasa-shaped NLU parse result (see :meth:`UserUttered.from_parse`)."""
        return TrackerState(with_listens(self.events + (UserUttered.from_parse(result),)))

    def with_action(self, name: str) -> "TrackerState":
        """Append a bot action."""
        return self.with_events(ActionExecuted(name))

    def with_slot(self, name: str, value: Any) -> "TrackerState":
        """Append a slot being set."""
        return self.with_events(SlotSet(name, value))

    def with_active_loop(self, name: str | None) -> "TrackerState":
        """Append a form becoming active (or ending, with ``None``)."""
        return self.with_events(ActiveLoop(name))

    @classmethod
    def from_steps(cls, steps: Sequence[Step]) -> "TrackerState":
        """A tracker replaying linear story steps (checkpoints are skipped).

        ``or`` steps have several continuations; expand the story with
        :func:`pipeline.training.core.stories.expand_stories` instead.
        """
        return cls(with_listens(events_from_steps(steps)))

    @classmethod
    def from_story(cls, story: Story) -> "TrackerState":
        """A tracker replaying a story (a rule's condition first)."""
        return cls(with_listens(events_from_steps(story.condition) + events_from_steps(story.steps)))

    # ------------------------------------------------------------------- reading

    @property
    def latest_action(self) -> str:
        """Name of the last action run; ``action_listen`` at the start."""
        for event in reversed(self.events):
            if isinstance(event, ActionExecuted):
                return event.name
        return ACTION_LISTEN

    @property
    def active_loop(self) -> str | None:
        """The active form, if any."""
        loop: str | None = None
        for event in self.events:
            if isinstance(event, ActiveLoop):
                loop = event.name
        return loop

    @property
    def slots(self) -> dict[str, Any]:
        """Slot values set so far (a reset slot maps to ``None``)."""
        values: dict[str, Any] = {}
        for event in self.events:
            if isinstance(event, SlotSet):
                values[event.name] = event.value
        return values


def events_from_steps(steps: Iterable[Step]) -> tuple[Event, ...]:
    """Events of linear story steps, without listens; an ``or`` step raises TrainingError."""
    events: list[Event] = []
    for step in steps:
        if isinstance(step, UserStep):
            events.append(UserUttered(step.intent, tuple(step.entities), step.text))
        elif isinstance(step, ActionStep):
            events.append(ActionExecuted(step.name))
        elif isinstance(step, SlotStep):
            events.extend(SlotSet(name, value) for name, value in step.slots)
        elif isinstance(step, ActiveLoopStep):
            events.append(ActiveLoop(step.name))
        elif isinstance(step, CheckpointStep):
            continue
        elif isinstance(step, OrStep):
            raise TrainingError(
                "an 'or' step has several continuations and cannot be replayed as one conversation",
                location=step.location,
                hint="expand the story with pipeline.training.core.stories.expand_stories",
            )
        else:  # pragma: no cover - the data model has no other step
            raise TrainingError(f"unknown story step {step!r}")
    return tuple(events)


def with_listens(events: Sequence[Event]) -> tuple[Event, ...]:
    """Insert ``action_listen`` before each user turn that follows a bot action."""
    result: list[Event] = []
    last_action: str | None = None  # None: nothing ran yet (the conversation waits)
    for event in events:
        if isinstance(event, UserUttered) and last_action not in (None, ACTION_LISTEN, RULE_SNIPPET_ACTION):
            result.append(ActionExecuted(ACTION_LISTEN))
            last_action = ACTION_LISTEN
        if isinstance(event, ActionExecuted):
            last_action = event.name
        result.append(event)
    return tuple(result)
