"""In-memory conversations: Rasa-shaped events in, Rasa-shaped tracker JSON out.

A conversation is the list of its events as Rasa's HTTP API spells them
(``{"event": "user" | "action" | "slot" | "active_loop", ...}``), each with a
timestamp. :func:`to_tracker_state` turns them into the
:class:`~pipeline.training.core.TrackerState` the dialogue model predicts
from. A tracker store with persistence, sessions, custom actions and forms
can grow from :class:`ConversationStore` without changing the HTTP layer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

from pipeline.errors import ModelError
from pipeline.training.core import TrackerState
from pipeline.training.core.tracker import ActionExecuted, ActiveLoop, SlotSet, UserUttered


class EventType(str, Enum):
    """The Rasa event types this server understands."""

    USER = "user"
    ACTION = "action"
    SLOT = "slot"
    ACTIVE_LOOP = "active_loop"


class EventError(ValueError):
    """An event in a request body is not one this server understands (the message says why)."""


@dataclass
class Conversation:
    """One conversation's events, oldest first."""

    conversation_id: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def append(self, event: Mapping[str, Any], *, now: float | None = None) -> None:
        """Append a checked event (see :func:`check_event`), stamping its time."""
        self.events.append({**event, "timestamp": now if now is not None else time.time()})

    def to_json(self) -> dict[str, Any]:
        """Rasa's tracker JSON (``current_state``): sender_id, slots, latest_message, events, ..."""
        state = to_tracker_state(self.events)
        latest_user = next((e for e in reversed(self.events) if e["event"] == EventType.USER.value), None)
        latest_action = next((e for e in reversed(self.events) if e["event"] == EventType.ACTION.value), None)
        loop = state.active_loop
        return {
            "sender_id": self.conversation_id,
            "slots": state.slots,
            "latest_message": (latest_user or {}).get("parse_data", {"intent": {}, "entities": [], "text": None}),
            "latest_event_time": self.events[-1]["timestamp"] if self.events else None,
            "followup_action": None,
            "paused": False,
            "events": list(self.events),
            "latest_input_channel": (latest_user or {}).get("input_channel"),
            "active_loop": {"name": loop} if loop else {},
            "latest_action": {"action_name": latest_action["name"]} if latest_action else {},
            "latest_action_name": latest_action["name"] if latest_action else None,
        }


class ConversationStore:
    """Conversations by id, the least recently used dropped beyond ``limit``."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = max(1, limit)
        self._conversations: OrderedDict[str, Conversation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._conversations)

    def get(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None when unknown."""
        conversation = self._conversations.get(conversation_id)
        if conversation is not None:
            self._conversations.move_to_end(conversation_id)
        return conversation

    def get_or_create(self, conversation_id: str) -> Conversation:
        """The conversation, started empty when unknown."""
        conversation = self.get(conversation_id)
        if conversation is None:
            conversation = self._conversations[conversation_id] = Conversation(conversation_id)
            while len(self._conversations) > self.limit:
                self._conversations.popitem(last=False)
        return conversation


def user_event(parse_data: Mapping[str, Any], *, message_id: str | None = None,
               input_channel: str | None = None) -> dict[str, Any]:
    """The ``user`` event of a parsed message."""
    return {
        "event": EventType.USER.value,
        "text": parse_data.get("text"),
        "parse_data": dict(parse_data),
        "input_channel": input_channel,
        "message_id": message_id,
        "metadata": {},
    }


def action_event(name: str, *, policy: str | None = None, confidence: float | None = None) -> dict[str, Any]:
    """An ``action`` event."""
    return {"event": EventType.ACTION.value, "name": name, "policy": policy, "confidence": confidence}


def check_event(raw: Any, index: int = 0) -> dict[str, Any]:
    """A request's event as this server stores it; EventError naming the field otherwise."""
    if not isinstance(raw, Mapping):
        raise EventError(f"event {index} must be a JSON object, received {type(raw).__name__}")
    kind = raw.get("event")
    known = [t.value for t in EventType]
    if kind not in known:
        raise EventError(f"event {index} has 'event': {kind!r}; this server understands {known}")
    if kind == EventType.USER.value:
        parse_data = raw.get("parse_data") or {}
        if not isinstance(parse_data, Mapping):
            raise EventError(f"event {index}: 'parse_data' must be an object")
        try:
            UserUttered.from_parse(parse_data, text=raw.get("text"))
        except ModelError as exc:  # the parse data is not Rasa-shaped
            raise EventError(f"event {index}: {exc.message}") from exc
        return user_event({**parse_data, "text": raw.get("text", parse_data.get("text"))},
                          message_id=raw.get("message_id"), input_channel=raw.get("input_channel"))
    name = raw.get("name")
    if kind == EventType.ACTION.value:
        if not isinstance(name, str) or not name:
            raise EventError(f"event {index}: an 'action' event needs a 'name' string")
        return action_event(name, policy=raw.get("policy"), confidence=raw.get("confidence"))
    if kind == EventType.SLOT.value:
        if not isinstance(name, str) or not name:
            raise EventError(f"event {index}: a 'slot' event needs a 'name' string")
        return {"event": kind, "name": name, "value": raw.get("value")}
    if name is not None and not isinstance(name, str):
        raise EventError(f"event {index}: an 'active_loop' event's 'name' must be a string or null")
    return {"event": kind, "name": name}


def to_tracker_state(events: list[dict[str, Any]]) -> TrackerState:
    """The dialogue model's view of stored events (listens inserted where Rasa has them)."""
    state = TrackerState()
    for event in events:
        kind = event["event"]
        if kind == EventType.USER.value:
            state = state.with_parse({**event.get("parse_data", {}), "text": event.get("text")})
        elif kind == EventType.ACTION.value:
            state = state.with_events(ActionExecuted(event["name"]))
        elif kind == EventType.SLOT.value:
            state = state.with_events(SlotSet(event["name"], event.get("value")))
        elif kind == EventType.ACTIVE_LOOP.value:
            state = state.with_events(ActiveLoop(event.get("name")))
    return state


__all__ = ["Conversation", "ConversationStore", "EventError", "EventType",
           "action_event", "check_event", "to_tracker_state", "user_event"]
