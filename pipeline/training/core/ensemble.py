"""How the policies' predictions are combined: Rasa's ensemble rule.

Every policy returns a probability vector over the domain's actions (or nothing).
The ensemble takes the prediction with the highest confidence; a tie goes to the
policy with the higher priority (RulePolicy 6, MemoizationPolicy 3, TEDPolicy 1).
Rules and memoization predict with confidence 1.0. When no rule applies,
RulePolicy predicts ``core_fallback_action_name`` with confidence
``core_fallback_threshold``, so the fallback action wins whenever no other
policy is more confident than the threshold (a tie goes to RulePolicy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["PolicyOutput", "Prediction", "pick_prediction"]


@dataclass(frozen=True)
class PolicyOutput:
    """One policy's prediction: probabilities over ``DomainSpec.actions``."""

    policy: str
    priority: int
    probabilities: np.ndarray

    @property
    def confidence(self) -> float:
        return float(self.probabilities.max()) if self.probabilities.size else 0.0


@dataclass(frozen=True)
class Prediction:
    """The next action, how sure the winning policy is, and its ranking of actions.

    ``policy`` is the winning policy's name; ``"none"`` (with ``action_listen``
    and confidence 0) when no policy could predict anything, e.g. a model with
    only a TEDPolicy that had no stories to learn from. ``ranking`` lists the
    winning policy's actions with a confidence above 0, best first.
    """

    action: str
    confidence: float
    policy: str
    ranking: list[tuple[str, float]]

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "confidence": self.confidence,
            "policy": self.policy,
            "ranking": [[name, value] for name, value in self.ranking],
        }


def pick_prediction(
    outputs: Sequence[PolicyOutput | None], actions: Sequence[str], *, ranking_length: int = 10
) -> Prediction:
    """Pick the most confident policy output (ties: higher priority) as a :class:`Prediction`."""
    best: PolicyOutput | None = None
    for output in outputs:
        if output is None:
            continue
        if best is None or (output.confidence, output.priority) > (best.confidence, best.priority):
            best = output
    if best is None or best.confidence <= 0.0:
        # no policy could say anything (e.g. only a TEDPolicy without training data)
        return Prediction(actions[0], 0.0, "none", [])
    probabilities = best.probabilities
    order = np.argsort(-probabilities, kind="stable")
    ranking = [(actions[i], float(probabilities[i])) for i in order[: max(ranking_length, 1)] if probabilities[i] > 0.0]
    index = int(order[0])
    return Prediction(actions[index], float(probabilities[index]), best.policy, ranking)
