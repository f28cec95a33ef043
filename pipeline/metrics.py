"""Quality metrics and the quality gate: pure functions over plain values.

Reports have the shape of Rasa's ``intent_report.json`` (scikit-learn's
``classification_report(output_dict=True)`` plus ``confused_with``)::

    {
      "greet":        {"precision": 1.0, "recall": 0.5, "f1-score": 0.667,
                       "support": 2, "confused_with": {"goodbye": 1}},
      ...
      "accuracy":     0.75,
      "macro avg":    {"precision": ..., "recall": ..., "f1-score": ..., "support": 4},
      "weighted avg": {...},
      "micro avg":    {...},
    }

Undefined ratios (0/0) are 0.0, like scikit-learn's ``zero_division=0``.
The gate (:func:`compare_metrics`) turns headline metrics into checks that
explain themselves. NumPy is the only dependency; nothing here touches files.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

if TYPE_CHECKING:  # NumPy is imported where counted, so gating a skip needs no NumPy
    import numpy as np

from pipeline.data.model import EntitySpan
from pipeline.errors import DataError, Problem, UsageError

__all__ = [
    "AVERAGE_KEYS",
    "REPORT_KEYS",
    "HEADLINE_KEYS",
    "METRIC_NAMES",
    "CI_METRICS",
    "CiMetric",
    "FLOOR_METRICS",
    "GATED_METRICS",
    "pick_ci_metrics",
    "INTENT_DROP_CHECK",
    "MIN_INTENT_SUPPORT",
    "check_intent_drops",
    "Span",
    "GateCheck",
    "GateResult",
    "classification_report",
    "entity_report",
    "confusion_matrix",
    "compare_metrics",
    "headline_metrics",
    "report_labels",
]

#: Averages every report carries, in output order.
AVERAGE_KEYS = ("macro avg", "weighted avg", "micro avg")
#: Keys of a report that are not labels.
REPORT_KEYS = ("accuracy", *AVERAGE_KEYS)
#: Keys of :func:`headline_metrics`, in display order.
#: ``response_selection_f1`` is there only for models with a ResponseSelector (see :func:`headline_metrics`).
HEADLINE_KEYS = ("intent_f1", "intent_accuracy", "intent_macro_f1", "entity_f1", "story_accuracy", "response_selection_f1")


@dataclass(frozen=True)
class CiMetric:
    """One metric the CI step reports, declared once; the CLI, the Action and the reports iterate over
    :data:`CI_METRICS`.

    ``floor_flag`` is the gate's floor option in its three spellings (Action input ``min-intent-f1``,
    flag ``--min-intent-f1``, field ``min_intent_f1``); ``output`` the Action/GitLab output.
    """

    key: str  #: key in the metrics of a result (and in a stored ``metrics.json``)
    name: str  #: human name in gate reasons and help texts
    title: str  #: row title of the job summary's metrics table
    gated: bool = False  #: checked by the quality gate (floor and drop vs the previous model)
    floor_flag: str | None = None  #: the ``--min-...`` option setting a floor (``None``: no floor)
    output: str | None = None  #: step output carrying the value (``None``: none)
    optional: bool = False  #: reported only when measured (e.g. only models with a ResponseSelector)

    @property
    def floor_field(self) -> str | None:
        """The option's field name (``min_intent_f1``), also argparse's ``dest``."""
        return self.floor_flag.replace("-", "_") if self.floor_flag else None


#: The metrics of a CI result, in the order of the summary table.
CI_METRICS: tuple[CiMetric, ...] = (
    CiMetric("intent_f1", "intent F1", "Intent F1 (weighted)", gated=True, floor_flag="min-intent-f1",
             output="intent-f1"),
    CiMetric("intent_accuracy", "intent accuracy", "Intent accuracy"),
    CiMetric("entity_f1", "entity F1", "Entity F1 (exact span, micro)", gated=True, floor_flag="min-entity-f1",
             output="entity-f1"),
    CiMetric("story_accuracy", "story accuracy", "Story accuracy", gated=True, floor_flag="min-story-accuracy",
             output="story-accuracy"),
    CiMetric("response_selection_f1", "response selection F1", "Response selection F1 (weighted)", gated=True,
             optional=True),
)
#: Metrics with a floor option, in option order.
FLOOR_METRICS: tuple[CiMetric, ...] = tuple(m for m in CI_METRICS if m.floor_flag)
#: Human names of the headline metrics, used in gate reasons.
METRIC_NAMES: dict[str, str] = {
    **{m.key: m.name for m in CI_METRICS},
    "intent_macro_f1": "intent macro F1",
    "intent_f1_per_intent": "per-intent F1",
}
#: The headline metrics the quality gate checks (floors and drops), in check order.
GATED_METRICS: tuple[str, ...] = (*(m.key for m in FLOOR_METRICS),
                                  *(m.key for m in CI_METRICS if m.gated and not m.floor_flag))


def pick_ci_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The metrics a CI result carries: every one of :data:`CI_METRICS`, the optional ones only when measured."""
    picked: dict[str, float | None] = {}
    for metric in CI_METRICS:
        value = metrics.get(metric.key)
        if value is not None or not metric.optional:
            picked[metric.key] = value
    return picked


#: The per-intent gate (``--max-intent-drop``): the name of its check, checked after GATED_METRICS ...
INTENT_DROP_CHECK = "intent_f1_per_intent"
#: ... over intents with at least this many shared test utterances, so one example cannot flip it.
MIN_INTENT_SUPPORT = 5

#: How many confusions ``confused_with`` lists per label (Rasa lists two).
_CONFUSED_WITH_TOP = 2
#: Tolerance for comparing rounded decimal thresholds with float differences.
_EPS = 1e-9

#: An entity span: the data model's :class:`EntitySpan` or a Rasa parse-output dict
#: with at least ``start``, ``end`` and ``entity`` (``role``/``group`` optional).
Span = Union[EntitySpan, Mapping[str, Any]]


# ---------------------------------------------------------------- classification


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def _scores(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts; 0.0 wherever undefined."""
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return precision, recall, f1


def _check_labels(labels: Iterable[str]) -> None:
    clashes = sorted(set(labels) & set(REPORT_KEYS))
    if clashes:
        raise DataError(
            [
                Problem(
                    "error",
                    f"label {name!r} has the same name as a report key",
                    hint=f"rename it; report keys are {', '.join(REPORT_KEYS)} (received {name!r})",
                    code="reserved-label",
                )
                for name in clashes
            ]
        )


def _build_report(
    labels: Sequence[str],
    tp: np.ndarray,
    fp: np.ndarray,
    fn: np.ndarray,
    confusions: Mapping[str, Mapping[str, int]],
    accuracy: float,
) -> dict[str, Any]:
    """Assemble the sklearn/Rasa-shaped report from per-label counts."""
    import numpy as np  # noqa: PLC0415 - lazy: the decide phase installs no NumPy
    report: dict[str, Any] = {}
    support = tp + fn
    per_label = [_scores(int(t), int(f), int(n)) for t, f, n in zip(tp, fp, fn)]
    for i, label in enumerate(labels):
        precision, recall, f1 = per_label[i]
        ranked = sorted(confusions.get(label, {}).items(), key=lambda item: (-item[1], item[0]))
        report[label] = {
            "precision": precision,
            "recall": recall,
            "f1-score": f1,
            "support": int(support[i]),
            "confused_with": {other: int(count) for other, count in ranked[:_CONFUSED_WITH_TOP]},
        }
    total = int(support.sum())
    scores = np.array(per_label, dtype=float).reshape(-1, 3)
    report["accuracy"] = float(accuracy)
    if len(labels):
        macro = scores.mean(axis=0)
        weighted = (scores * support[:, None]).sum(axis=0) / total if total else np.zeros(3)
    else:
        macro = weighted = np.zeros(3)
    micro = _scores(int(tp.sum()), int(fp.sum()), int(fn.sum()))
    for key, values in (("macro avg", macro), ("weighted avg", weighted), ("micro avg", micro)):
        report[key] = {
            "precision": float(values[0]),
            "recall": float(values[1]),
            "f1-score": float(values[2]),
            "support": total,
        }
    return report


def confusion_matrix(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> tuple[tuple[str, ...], np.ndarray]:
    """Count matrix ``[true, predicted]`` over ``labels`` (default: sorted labels seen).

    Pairs whose true or predicted label is not in ``labels`` are not counted,
    as in scikit-learn.
    """
    import numpy as np  # noqa: PLC0415 - lazy: the decide phase installs no NumPy

    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true and y_pred must have the same length (received {len(y_true)} and {len(y_pred)})"
        )
    names = tuple(labels) if labels is not None else tuple(sorted(set(y_true) | set(y_pred)))
    index = {label: i for i, label in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    for true, pred in zip(y_true, y_pred):
        if true in index and pred in index:
            matrix[index[true], index[pred]] += 1
    return names, matrix


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Per-label precision/recall/F1/support with top confusions, plus accuracy and averages.

    ``labels`` restricts (and orders) the per-label entries and the averages,
    as in scikit-learn; by default every label seen in either sequence, sorted.
    ``accuracy`` is always the share of all pairs that match exactly.
    """
    import numpy as np  # noqa: PLC0415 - lazy: the decide phase installs no NumPy

    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true and y_pred must have the same length (received {len(y_true)} and {len(y_pred)})"
        )
    seen = sorted(set(y_true) | set(y_pred))
    names = tuple(labels) if labels is not None else tuple(seen)
    _check_labels(names)
    all_names, matrix = confusion_matrix(y_true, y_pred, [*names, *(s for s in seen if s not in names)])
    k = len(names)
    diagonal = np.diag(matrix)[:k]
    fp = matrix[:, :k].sum(axis=0) - diagonal
    fn = matrix[:k, :].sum(axis=1) - diagonal
    confusions = {
        names[i]: {all_names[j]: int(matrix[i, j]) for j in range(len(all_names)) if j != i and matrix[i, j]}
        for i in range(k)
    }
    accuracy = _ratio(sum(t == p for t, p in zip(y_true, y_pred)), len(y_true))
    return _build_report(names, diagonal, fp, fn, confusions, accuracy)


# ---------------------------------------------------------------------- entities


def _span_key(span: Span, include_roles: bool) -> tuple[int, int, str]:
    """``(start, end, label)`` of a span; label is ``entity`` or ``entity#role``."""
    if isinstance(span, EntitySpan):
        start, end, entity, role = span.start, span.end, span.entity, span.role
    elif isinstance(span, Mapping) and all(span.get(key) is not None for key in ("start", "end", "entity")):
        start, end, entity, role = span["start"], span["end"], span["entity"], span.get("role")
    else:
        raise TypeError(
            "an entity span must be an EntitySpan or a mapping with 'start', 'end' and 'entity'"
            f" (received {span!r})"
        )
    label = f"{entity}#{role}" if include_roles and role else str(entity)
    return int(start), int(end), label


def entity_report(
    gold: Sequence[Sequence[Span]],
    pred: Sequence[Sequence[Span]],
    *,
    include_roles: bool = False,
) -> dict[str, Any]:
    """Exact-span entity report over entity types, shaped like :func:`classification_report`.

    A predicted span is correct when a gold span of the same example has the
    same ``start``, ``end`` and label (the entity type, or ``entity#role`` when
    ``include_roles``). Per label: precision = correct/predicted, recall =
    correct/gold, support = gold spans. ``micro avg`` is the headline entity
    F1. ``confused_with`` counts gold spans predicted at the same offsets
    with another label. ``accuracy`` is the share of examples whose predicted
    spans equal the gold spans exactly (no entities on both sides counts as
    exact).
    """
    if len(gold) != len(pred):
        raise ValueError(
            f"gold and pred must have one span list per example (received {len(gold)} and {len(pred)})"
        )
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    confusions: dict[str, Counter[str]] = {}
    exact = 0
    for gold_spans, pred_spans in zip(gold, pred):
        gold_keys = Counter(_span_key(s, include_roles) for s in gold_spans)
        pred_keys = Counter(_span_key(s, include_roles) for s in pred_spans)
        matched = gold_keys & pred_keys
        missed = gold_keys - matched
        spurious = pred_keys - matched
        exact += gold_keys == pred_keys
        for (_, _, label), count in matched.items():
            tp[label] += count
        for (_, _, label), count in missed.items():
            fn[label] += count
        for (_, _, label), count in spurious.items():
            fp[label] += count
        spurious_at: dict[tuple[int, int], Counter[str]] = {}
        for (start, end, label), count in spurious.items():
            spurious_at.setdefault((start, end), Counter())[label] += count
        for (start, end, label), count in missed.items():
            for other, other_count in spurious_at.get((start, end), Counter()).items():
                confusions.setdefault(label, Counter())[other] += min(count, other_count)
    names = tuple(sorted(set(tp) | set(fp) | set(fn)))
    _check_labels(names)
    import numpy as np  # noqa: PLC0415 - lazy: the decide phase installs no NumPy

    tp_counts, fp_counts, fn_counts = (np.array([c[n] for n in names], dtype=np.int64) for c in (tp, fp, fn))
    return _build_report(names, tp_counts, fp_counts, fn_counts, confusions, _ratio(exact, len(gold)))


def report_labels(report: Mapping[str, Any]) -> tuple[str, ...]:
    """The label keys of a report (everything but accuracy and the averages)."""
    return tuple(key for key in report if key not in REPORT_KEYS)


# -------------------------------------------------------------------- headlines


def headline_metrics(
    intent_report: Mapping[str, Any] | None,
    entity_report: Mapping[str, Any] | None,
    story_report: Mapping[str, Any] | None,
    *,
    response_report: Mapping[str, Any] | None = None,
) -> dict[str, float | None]:
    """The few numbers the gate looks at; ``None`` where nothing was measured.

    ``intent_f1`` is the weighted-average F1 (what Rasa reports), ``entity_f1``
    the micro-average F1. A report without labels (no test data) measures
    nothing. ``story_accuracy`` is ``conversation_accuracy.accuracy`` of a
    Rasa ``story_report.json`` when present, else its top-level ``accuracy``.
    ``response_selection_f1`` (weighted-average F1 of Rasa's
    ``response_selection_report.json``) is a key only when a response report
    is given, i.e. for models with a ResponseSelector.
    """

    def measured(report: Mapping[str, Any] | None) -> bool:
        return report is not None and bool(report_labels(report))

    intents = intent_report if measured(intent_report) else None
    entities = entity_report if measured(entity_report) else None
    story: float | None = None
    if story_report is not None:
        conversation = story_report.get("conversation_accuracy")
        if isinstance(conversation, Mapping) and conversation.get("accuracy") is not None:
            story = float(conversation["accuracy"])
        elif isinstance(story_report.get("accuracy"), (int, float)):
            story = float(story_report["accuracy"])
    result: dict[str, float | None] = {
        "intent_f1": float(intents["weighted avg"]["f1-score"]) if intents else None,
        "intent_accuracy": float(intents["accuracy"]) if intents else None,
        "intent_macro_f1": float(intents["macro avg"]["f1-score"]) if intents else None,
        "entity_f1": float(entities["micro avg"]["f1-score"]) if entities else None,
        "story_accuracy": story,
    }
    if response_report is not None:
        responses = response_report if measured(response_report) else None
        result["response_selection_f1"] = float(responses["weighted avg"]["f1-score"]) if responses else None
    return result


# ------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class GateCheck:
    """One metric checked against its floor and against the previous model."""

    name: str
    value: float | None
    previous: float | None
    floor: float | None
    max_drop: float
    passed: bool
    reason: str
    #: the labels a per-label check failed on (the per-intent gate's intents), worst first
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateResult:
    """The quality gate's verdict: passed only when every check passed."""

    passed: bool
    checks: tuple[GateCheck, ...]

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        """The checks that failed, in check order."""
        return tuple(check for check in self.checks if not check.passed)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every check's reason, in check order."""
        return tuple(check.reason for check in self.checks)


def _check_threshold(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise UsageError(
            f"{name} must be between {low} and {high}",
            hint=f"set {name} to a fraction such as 0.02 (received {value!r})",
        )


def _check_metric(
    name: str, value: float | None, previous: float | None, floor: float | None, max_drop: float, has_previous: bool
) -> GateCheck:
    label = METRIC_NAMES.get(name, name.replace("_", " "))
    if value is None:
        return GateCheck(name, None, previous, floor, max_drop, True, f"{label} not measured")
    failures: list[str] = []
    notes: list[str] = []
    if floor is not None:
        if value < floor - _EPS:
            failures.append(f"{label} {value:.3f} is below the floor {floor:.3f}")
        else:
            notes.append(f"meets the floor {floor:.3f}")
    if previous is not None:
        drop = previous - value
        if drop > max_drop + _EPS:
            failures.append(
                f"{label} {value:.3f} dropped {drop:.3f} below the previous model's {previous:.3f}"
                f" (allowed drop {max_drop:.3f})"
            )
        elif drop > 0:
            notes.append(f"is {drop:.3f} below the previous model's {previous:.3f} (allowed drop {max_drop:.3f})")
        else:
            notes.append(f"is not below the previous model's {previous:.3f}")
    else:
        notes.append("has no previous value to compare" if has_previous else "has no previous model to compare")
    if failures:
        return GateCheck(name, value, previous, floor, max_drop, False, "; ".join(failures))
    reason = f"{label} {value:.3f} " + " and ".join(notes)
    return GateCheck(name, value, previous, floor, max_drop, True, reason)


def compare_metrics(
    current: Mapping[str, float | None],
    previous: Mapping[str, float | None] | None,
    *,
    max_drop: float,
    floors: Mapping[str, float | None],
) -> GateResult:
    """The quality gate: each metric must meet its floor and not drop more than ``max_drop``.

    Metrics checked: every key of ``floors`` (a ``None`` floor means "drop
    check only"), then every other key of ``current``. A metric that is
    missing or ``None`` in ``current`` passes as "not measured"; one missing
    in ``previous`` (or no previous model at all) is checked against its
    floor only.
    """
    _check_threshold("max_drop", max_drop, 0.0, 1.0)
    for name, floor in floors.items():
        _check_threshold(f"the floor of {name}", floor, 0.0, 1.0)
    names = [*floors, *(name for name in current if name not in floors)]
    checks = tuple(
        _check_metric(
            name,
            current.get(name),
            previous.get(name) if previous is not None else None,
            floors.get(name),
            max_drop,
            previous is not None,
        )
        for name in names
    )
    return GateResult(passed=all(check.passed for check in checks), checks=checks)


def check_intent_drops(
    intents: Iterable[tuple[str, int, float, float]],
    max_intent_drop: float,
    *,
    min_support: int = MIN_INTENT_SUPPORT,
) -> GateCheck:
    """The per-intent gate: no intent with ``min_support`` shared test utterances may lose more
    than ``max_intent_drop`` F1. ``intents``: ``(intent, support, f1_before, f1_after)``; the
    failure names every intent that dropped too far, largest drop first."""
    _check_threshold("max_intent_drop", max_intent_drop, 0.0, 1.0)
    rows = list(intents)
    checked = [r for r in rows if r[1] >= min_support]
    dropped = sorted((r for r in checked if r[2] - r[3] > max_intent_drop + _EPS), key=lambda r: r[3] - r[2])
    label = METRIC_NAMES[INTENT_DROP_CHECK]
    worst = max((r[2] - r[3] for r in checked), default=0.0)
    if dropped:
        named = ", ".join(f"`{i}` {before:.3f} → {after:.3f} ({after - before:+.3f}, {n} utterances)" for i, n, before, after in dropped)
        reason = f"{label}: {len(dropped)} intent(s) dropped more than {max_intent_drop:.3f}: {named}"
        return GateCheck(
            INTENT_DROP_CHECK, -worst, None, None, max_intent_drop, False, reason, tuple(r[0] for r in dropped)
        )
    skipped = len(rows) - len(checked)
    reason = (
        f"{label}: no intent dropped more than {max_intent_drop:.3f} ({len(checked)} intent(s) with at least"
        f" {min_support} shared test utterances checked" + (f", {skipped} with fewer skipped)" if skipped else ")")
    )
    return GateCheck(INTENT_DROP_CHECK, -worst, None, None, max_intent_drop, True, reason)
