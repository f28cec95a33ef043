"""MemoizationPolicy: remembers the training stories, state window by state window.

The key is the canonical JSON of the last ``max_history`` states before an
action; the value is the action. A key seen with two different actions is
ambiguous and dropped, as in Rasa. A match predicts with confidence 1.0.
Trained on stories only (not rules), as Rasa's ML policies are.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .ensemble import PolicyOutput
from .settings import MemoSettings
from .states import DomainSpec, Replay, State, build_state_key

__all__ = ["MemoizationPolicy"]


def _window(history: Sequence[State], max_history: int | None) -> Sequence[State]:
    return history if max_history is None else history[-max_history:]


class MemoizationPolicy:
    """Rasa's MemoizationPolicy over :class:`~.states.State` windows."""

    name = "MemoizationPolicy"

    def __init__(self, settings: MemoSettings, lookup: Mapping[str, str]) -> None:
        self.settings = settings
        self.lookup = dict(lookup)

    @classmethod
    def train(cls, settings: MemoSettings, stories: Sequence[Replay]) -> "MemoizationPolicy":
        """Remember every (window, action) of the replayed stories; drop ambiguous windows."""
        lookup: dict[str, str] = {}
        ambiguous: set[str] = set()
        for played in stories:
            for k, action in enumerate(played.actions):
                key = build_state_key(_window(played.history(k), settings.max_history))
                if key in ambiguous:
                    continue
                if lookup.setdefault(key, action) != action:
                    del lookup[key]
                    ambiguous.add(key)
        return cls(settings, lookup)

    def recall(self, history: Sequence[State]) -> str | None:
        """The remembered action after this history, if any."""
        return self.lookup.get(build_state_key(_window(history, self.settings.max_history)))

    def predict(self, history: Sequence[State], spec: DomainSpec) -> PolicyOutput | None:
        action = self.recall(history)
        if action is None or not spec.has_action(action):
            return None
        probabilities = np.zeros(len(spec.actions), dtype=np.float64)
        probabilities[spec.action_index(action)] = 1.0
        return PolicyOutput(self.name, self.settings.priority, probabilities)

    def to_json(self) -> dict[str, Any]:
        return {"lookup": dict(sorted(self.lookup.items()))}

    @classmethod
    def from_json(cls, settings: MemoSettings, data: Mapping[str, Any]) -> "MemoizationPolicy":
        return cls(settings, data["lookup"])
