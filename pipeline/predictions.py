"""Per-utterance predictions stored with a model, and what changed between two models. Pure.

Each model keeps one compact row per test utterance (text hash, gold intent,
predicted intent, confidence, predicted entities) in its ``metrics.json``
beside the archive, under :data:`PREDICTIONS_KEY`, so the next run compares
without downloading or re-running the previous model. Utterances are matched
by text hash; an utterance is *right* when its intent and its entity spans
(start, end, type) are both right.

:func:`compute_prediction_diff` lists the utterances the new model fixed and
broke, and per-intent F1 before/after on the utterances both models saw,
sorted by harm (largest drop first).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "PREDICTIONS_KEY",
    "PREDICTIONS_FORMAT",
    "PredictionRow",
    "FlippedUtterance",
    "IntentChange",
    "PredictionDiff",
    "text_hash",
    "build_prediction_rows",
    "render_predictions",
    "parse_predictions",
    "compute_prediction_diff",
]

#: The key of the stored predictions in a model's ``metrics.json``.
PREDICTIONS_KEY = "predictions"
#: Version of the stored rows' layout.
PREDICTIONS_FORMAT = 1


def text_hash(text: str) -> str:
    """Content hash of an utterance (stored instead of the text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _spans(entities: Iterable[Mapping[str, Any]]) -> tuple[tuple[int, int, str], ...]:
    return tuple(sorted((int(e["start"]), int(e["end"]), str(e["entity"])) for e in entities))


@dataclass(frozen=True)
class PredictionRow:
    """One test utterance as one model saw it."""

    text_hash: str
    gold: str
    intent: str
    confidence: float
    entities: tuple[tuple[int, int, str], ...]
    gold_entities: tuple[tuple[int, int, str], ...] = ()

    @property
    def right(self) -> bool:
        return self.intent == self.gold and self.entities == self.gold_entities

    def to_json(self) -> list[Any]:
        return [self.text_hash, self.gold, self.intent, round(self.confidence, 4),
                [list(s) for s in self.entities], [list(s) for s in self.gold_entities]]

    @classmethod
    def from_json(cls, row: Sequence[Any]) -> "PredictionRow":
        return cls(str(row[0]), str(row[1]), str(row[2]), float(row[3]),
                   tuple((int(a), int(b), str(c)) for a, b, c in row[4]),
                   tuple((int(a), int(b), str(c)) for a, b, c in row[5]))


def build_prediction_rows(predictions: Iterable[Mapping[str, Any]]) -> list[PredictionRow]:
    """Rows from :attr:`pipeline.evaluation.NluEvaluation.predictions`."""
    return [
        PredictionRow(
            text_hash(p["text"]),
            str(p["intent"]),
            str(p["intent_prediction"]["name"]),
            float(p["intent_prediction"]["confidence"]),
            _spans(p["entity_predictions"]),
            _spans(p["entities"]),
        )
        for p in predictions
    ]


def render_predictions(rows: Sequence[PredictionRow]) -> dict[str, Any]:
    """The JSON stored under :data:`PREDICTIONS_KEY`."""
    return {"format": PREDICTIONS_FORMAT, "rows": [r.to_json() for r in rows]}


def parse_predictions(document: Any) -> list[PredictionRow] | None:
    """Rows of a stored document; ``None`` when absent or of another format (nothing to compare)."""
    if not isinstance(document, Mapping) or document.get("format") != PREDICTIONS_FORMAT:
        return None
    try:
        return [PredictionRow.from_json(row) for row in document.get("rows", [])]
    except (TypeError, ValueError, IndexError, KeyError):
        return None


@dataclass(frozen=True)
class FlippedUtterance:
    """An utterance one model got right and the other wrong."""

    text: str
    gold: str
    old_intent: str
    old_confidence: float
    new_intent: str
    new_confidence: float
    entities_changed: bool

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class IntentChange:
    """One intent's F1 on the shared utterances, before and after."""

    intent: str
    support: int
    f1_before: float
    f1_after: float

    @property
    def delta(self) -> float:
        return self.f1_after - self.f1_before

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "delta": round(self.delta, 4)}


@dataclass(frozen=True)
class PredictionDiff:
    """What changed between the previous and the new model's predictions."""

    compared: int  # utterances both models saw (same text and gold intent)
    fixed: tuple[FlippedUtterance, ...] = ()
    broken: tuple[FlippedUtterance, ...] = ()
    intents: tuple[IntentChange, ...] = field(default=())  # sorted by harm: largest F1 drop first

    def to_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "fixed": [f.to_dict() for f in self.fixed],
            "broken": [b.to_dict() for b in self.broken],
            "intents": [i.to_dict() for i in self.intents],
        }


def compute_prediction_diff(
    previous: Sequence[PredictionRow], current: Sequence[PredictionRow], texts: Iterable[str]
) -> PredictionDiff:
    """Fixed and broken utterances and per-intent F1 before/after, on the utterances in both.

    ``texts``: the current test utterances, to show the text of a hash. An utterance
    counts when both models have it with the same gold intent and entities.
    """
    by_hash = {text_hash(t): t for t in texts}
    old = {r.text_hash: r for r in previous}
    pairs = [
        (old[r.text_hash], r)
        for r in current
        if r.text_hash in old and old[r.text_hash].gold == r.gold and old[r.text_hash].gold_entities == r.gold_entities
    ]
    fixed: list[FlippedUtterance] = []
    broken: list[FlippedUtterance] = []
    for before, after in pairs:
        if before.right == after.right:
            continue
        flipped = FlippedUtterance(
            by_hash.get(after.text_hash, after.text_hash),
            after.gold,
            before.intent,
            before.confidence,
            after.intent,
            after.confidence,
            before.entities != after.entities,
        )
        (fixed if after.right else broken).append(flipped)
    from pipeline.metrics import classification_report, report_labels  # NumPy: only when comparing

    fixed.sort(key=lambda f: (-f.new_confidence, f.text))
    broken.sort(key=lambda f: (-f.new_confidence, f.text))
    intents: list[IntentChange] = []
    if pairs:
        gold = [a.gold for _, a in pairs]
        report_before = classification_report(gold, [b.intent for b, _ in pairs])
        report_after = classification_report(gold, [a.intent for _, a in pairs])
        for label in sorted(set(report_labels(report_before)) | set(report_labels(report_after))):
            b, a = report_before.get(label, {}), report_after.get(label, {})
            support = int(a.get("support", b.get("support", 0)))
            if not support:
                continue  # predicted but never the gold label: its F1 stays 0 on both sides
            intents.append(IntentChange(label, support, float(b.get("f1-score", 0.0)), float(a.get("f1-score", 0.0))))
        intents.sort(key=lambda i: (i.delta, -i.support, i.intent))
    return PredictionDiff(len(pairs), tuple(fixed), tuple(broken), tuple(intents))
