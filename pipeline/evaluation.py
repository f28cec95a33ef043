"""NLU evaluation: run a model over test data, build reports, write them to disk.

:func:`evaluate_nlu` and :func:`cross_validation_folds` are pure (apart from
calling the ``parse_batch`` function they are given); the ``write_`` and
``render_`` functions are the I/O edge. Files written, Rasa's names::

    intent_report.json            classification report over base intents
    entity_report.json            exact-span report over entity types
    intent_errors.json            misclassified examples, most confident first
    intent_confusion_matrix.png   row-normalised heatmap with counts on errors
    intent_histogram.png          confidence of correct vs wrong predictions

and, when the model has a ResponseSelector and the test data retrieval intents
(``faq/ask_price``), the same four for the selected responses::

    response_selection_report.json, response_selection_errors.json,
    response_selection_confusion_matrix.png, response_selection_histogram.png

``render_*`` functions return PNG bytes and touch nothing; matplotlib is
imported lazily inside them and drawn on the Agg canvas without pyplot.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pipeline.data.model import EntitySpan, NluData, NluExample
from pipeline.errors import ModelError, UsageError
from pipeline.metrics import classification_report, confusion_matrix, entity_report, headline_metrics

__all__ = [
    "INTENT_REPORT_FILE",
    "ENTITY_REPORT_FILE",
    "INTENT_ERRORS_FILE",
    "CONFUSION_MATRIX_FILE",
    "HISTOGRAM_FILE",
    "NO_INTENT",
    "NO_RESPONSE",
    "RESPONSE_REPORT_FILE",
    "NLU_JUNIT_FILE",
    "render_nlu_junit_xml",
    "ParseBatch",
    "NluEvaluation",
    "evaluate_nlu",
    "write_nlu_reports",
    "render_confusion_matrix",
    "render_confidence_histogram",
    "render_metrics_plot",
    "write_metrics_plot",
    "cross_validation_folds",
]

INTENT_REPORT_FILE = "intent_report.json"
ENTITY_REPORT_FILE = "entity_report.json"
INTENT_ERRORS_FILE = "intent_errors.json"
#: JUnit report of the NLU test: one case per test example (CI systems show failures from it).
NLU_JUNIT_FILE = "nlu_junit.xml"
CONFUSION_MATRIX_FILE = "intent_confusion_matrix.png"
HISTOGRAM_FILE = "intent_histogram.png"
RESPONSE_REPORT_FILE = "response_selection_report.json"
RESPONSE_ERRORS_FILE = "response_selection_errors.json"
RESPONSE_CONFUSION_MATRIX_FILE = "response_selection_confusion_matrix.png"
RESPONSE_HISTOGRAM_FILE = "response_selection_histogram.png"

#: Label used when a parse result has no intent (counts as a wrong prediction).
NO_INTENT = "<no intent>"
#: Label used when no ResponseSelector answered for a retrieval example (a wrong prediction).
NO_RESPONSE = "<no response>"
#: Key of the selector trained on every retrieval intent in a parse result, as in Rasa.
DEFAULT_SELECTOR = "default"

#: Parses a batch of texts into Rasa-shaped results, one per text, in order.
ParseBatch = Callable[[list[str]], list[dict[str, Any]]]


@dataclass(frozen=True)
class NluEvaluation:
    """Everything one NLU test run produced. Treat the dicts as read-only."""

    intent_report: dict[str, Any]
    entity_report: dict[str, Any]
    #: Rasa's ``intent_errors.json`` entries:
    #: ``{"text", "intent": gold name, "intent_prediction": {"name", "confidence"}}``.
    errors: tuple[dict[str, Any], ...]
    #: One per test example: text, gold and predicted intent, confidence, entities.
    predictions: tuple[dict[str, Any], ...]
    #: :func:`pipeline.metrics.headline_metrics` without stories.
    headline: dict[str, float | None]
    #: Rasa's ``response_selection_report.json`` over the full retrieval intents; ``None`` when
    #: the model has no ResponseSelector or the test data no retrieval intent.
    response_report: dict[str, Any] | None = None
    #: One per retrieval test example, Rasa's shape: ``{"text", "intent_response_key_target",
    #: "intent_response_key_prediction": {"name", "confidence"}}``.
    response_predictions: tuple[dict[str, Any], ...] = ()

    @property
    def response_errors(self) -> list[dict[str, Any]]:
        """Rasa's ``response_selection_errors.json``: wrong selections, most confident first."""
        wrong = [
            p
            for p in self.response_predictions
            if p["intent_response_key_target"] != p["intent_response_key_prediction"]["name"]
        ]
        return sorted(wrong, key=lambda p: -p["intent_response_key_prediction"]["confidence"])


# ---------------------------------------------------------------------- evaluate


def _span_dict(span: EntitySpan) -> dict[str, Any]:
    data: dict[str, Any] = {"entity": span.entity, "value": span.value, "start": span.start, "end": span.end}
    if span.role is not None:
        data["role"] = span.role
    if span.group is not None:
        data["group"] = span.group
    return data


def _check_parse(index: int, text: str, result: Any) -> tuple[str, float, list[dict[str, Any]]]:
    """Predicted base intent, its confidence and entities of one parse result."""

    def refuse(what: str) -> ModelError:
        return ModelError(
            f"parse result {index} for {text!r} {what}",
            hint="parse results must look like Rasa's: {'text', 'intent': {'name', 'confidence'},"
            f" 'entities': [{{'entity', 'start', 'end', ...}}]}} (received {result!r})",
        )

    if not isinstance(result, Mapping):
        raise refuse("is not a mapping")
    intent = result.get("intent") or {}
    if not isinstance(intent, Mapping):
        raise refuse("has an 'intent' that is not a mapping")
    name = intent.get("name")
    # Retrieval intents may come back as "chitchat/ask_name"; the gold label is the base intent.
    base = str(name).split("/", 1)[0] if name else NO_INTENT
    confidence = float(intent.get("confidence") or 0.0)
    entities = result.get("entities") or []
    if not isinstance(entities, Sequence) or not all(
        isinstance(e, Mapping) and all(e.get(k) is not None for k in ("entity", "start", "end")) for e in entities
    ):
        raise refuse("has entities without 'entity', 'start' and 'end'")
    return base, confidence, [dict(e) for e in entities]


def evaluate_nlu(parse_batch: ParseBatch, test: NluData) -> NluEvaluation:
    """Parse every test example and compare against its annotations.

    Intents are compared as base intents (``NluExample.intent``); a
    prediction of ``nlu_fallback`` (or no intent at all) is simply a wrong
    label. Entities are compared by exact span (see
    :func:`pipeline.metrics.entity_report`).
    """
    examples: tuple[NluExample, ...] = test.examples
    texts = [example.text for example in examples]
    results = parse_batch(texts) if texts else []
    if len(results) != len(texts):
        raise ModelError(
            f"the model returned {len(results)} parse results for {len(texts)} test examples",
            hint="parse_batch must return exactly one result per text, in order",
        )
    predictions: list[dict[str, Any]] = []
    for index, (example, result) in enumerate(zip(examples, results)):
        name, confidence, entities = _check_parse(index, example.text, result)
        predictions.append(
            {
                "text": example.text,
                "intent": example.intent,
                "intent_prediction": {"name": name, "confidence": confidence},
                "entities": [_span_dict(span) for span in example.entities],
                "entity_predictions": entities,
            }
        )
    y_true = [p["intent"] for p in predictions]
    y_pred = [p["intent_prediction"]["name"] for p in predictions]
    intents = classification_report(y_true, y_pred)
    entities_report = entity_report(
        [example.entities for example in examples], [p["entity_predictions"] for p in predictions]
    )
    errors = sorted(
        (
            {"text": p["text"], "intent": p["intent"], "intent_prediction": dict(p["intent_prediction"])}
            for p in predictions
            if p["intent"] != p["intent_prediction"]["name"]
        ),
        key=lambda e: -e["intent_prediction"]["confidence"],
    )
    selections = _response_predictions(examples, results)
    response_report = None
    if selections:
        response_report = classification_report(
            [p["intent_response_key_target"] for p in selections],
            [p["intent_response_key_prediction"]["name"] for p in selections],
        )
    return NluEvaluation(
        intent_report=intents,
        entity_report=entities_report,
        errors=tuple(errors),
        predictions=tuple(predictions),
        headline=headline_metrics(intents, entities_report, None, response_report=response_report),
        response_report=response_report,
        response_predictions=tuple(selections),
    )


def _response_predictions(examples: Sequence[NluExample], results: Sequence[Any]) -> list[dict[str, Any]]:
    """The selected response of every retrieval example, as Rasa's ``get_eval_data`` picks it:
    the selector of the example's retrieval intent when there is one, else ``default``.
    Empty when no result has a ``response_selector`` (the model has no selector)."""
    if not any(isinstance(r.get("response_selector"), Mapping) for r in results):
        return []
    rows = []
    for example, result in zip(examples, results):
        if not example.response_key:
            continue
        selection = result.get("response_selector")
        selection = selection if isinstance(selection, Mapping) else {}
        key = example.intent if isinstance(selection.get(example.intent), Mapping) else DEFAULT_SELECTOR
        chosen = selection.get(key)
        response = chosen.get("response") if isinstance(chosen, Mapping) else None
        response = response if isinstance(response, Mapping) else {}
        rows.append(
            {
                "text": example.text,
                "intent_response_key_target": example.full_intent,
                "intent_response_key_prediction": {
                    "name": str(response.get("intent_response_key") or NO_RESPONSE),
                    "confidence": float(response.get("confidence") or 0.0),
                },
            }
        )
    return rows


# ------------------------------------------------------------------------ folds


def cross_validation_folds(data: NluData, folds: int, seed: int = 42) -> list[tuple[NluData, NluData]]:
    """Split into ``folds`` (train, test) pairs, stratified by intent.

    Each intent's examples are shuffled with ``seed`` and dealt round-robin
    over the folds, continuing where the previous intent stopped, so fold
    sizes differ by at most one. Every example is in exactly one test fold;
    examples keep their original order. Synonyms, regexes and lookups go
    with the training side only.
    """
    if not isinstance(folds, int) or folds < 2:
        raise UsageError(
            "cross-validation needs at least 2 folds",
            hint=f"pass folds >= 2 (received {folds!r})",
        )
    if folds > len(data.examples):
        raise UsageError(
            f"cannot make {folds} folds from {len(data.examples)} examples",
            hint=f"use at most {len(data.examples)} folds or add examples (received folds={folds})",
        )
    rng = random.Random(seed)
    by_intent: dict[str, list[int]] = {}
    for index, example in enumerate(data.examples):
        by_intent.setdefault(example.intent, []).append(index)
    assignment = [0] * len(data.examples)
    slot = 0
    for intent in sorted(by_intent):
        indices = by_intent[intent]
        rng.shuffle(indices)
        for index in indices:
            assignment[index] = slot % folds
            slot += 1
    pairs = []
    for fold in range(folds):
        test = tuple(e for e, f in zip(data.examples, assignment) if f == fold)
        train = tuple(e for e, f in zip(data.examples, assignment) if f != fold)
        pairs.append(
            (
                NluData(examples=train, synonyms=data.synonyms, regexes=data.regexes, lookups=data.lookups),
                NluData(examples=test),
            )
        )
    return pairs


# ------------------------------------------------------------------------ write


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas with constrained layout; no pyplot, no global state."""
    from pipeline.extras import Extra, require_extra  # noqa: PLC0415

    require_extra(Extra.PLOTS, "drawing report plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - deliberately lazy
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def render_confusion_matrix(
    y_true: Sequence[str], y_pred: Sequence[str], *, title: str = "Intent confusion matrix"
) -> bytes:
    """PNG of a row-normalised confusion heatmap with a colour bar; errors annotated with counts.

    Readable up to ~100 labels: the figure grows with the label count, x
    ticks are vertical and fonts shrink; diagonal counts are annotated only
    for up to 20 labels so that errors stand out.
    """
    from matplotlib.colors import PowerNorm  # noqa: PLC0415 - deliberately lazy

    labels, matrix = confusion_matrix(y_true, y_pred)
    n = max(len(labels), 1)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = min(max(6.0, 0.22 * n + 3.0), 36.0)
    font = 9 if n <= 20 else 7 if n <= 50 else 6
    fig = _figure(size + 1.5, size)
    ax = fig.subplots()
    # A square-root colour scale keeps a 1-in-10 confusion visible next to a full diagonal.
    image = ax.imshow(normalised, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0), interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="share of true intent")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=90, fontsize=font)
    ax.set_yticks(range(len(labels)), labels=labels, fontsize=font)
    ax.set_xlabel("predicted intent")
    ax.set_ylabel("true intent")
    ax.set_title(f"{title} ({int(matrix.sum())} examples, {int(np.trace(matrix))} correct)")
    for i, j in zip(*np.nonzero(matrix)):
        if i == j and n > 20:
            continue
        colour = "white" if normalised[i, j] > 0.35 else ("black" if i == j else "darkred")
        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=font, color=colour)
    return _png(fig)


def render_confidence_histogram(
    predictions: Sequence[Mapping[str, Any]], *, target: str = "intent", title: str = "Intent prediction confidence"
) -> bytes:
    """PNG histogram of intent confidence, correct vs wrong predictions, like Rasa's
    (``target="intent_response_key_target"``: of response selection predictions)."""
    correct: list[float] = []
    wrong: list[float] = []
    prediction = "intent_response_key_prediction" if target == "intent_response_key_target" else "intent_prediction"
    for p in predictions:
        hit = p[target] == p[prediction]["name"]
        (correct if hit else wrong).append(float(p[prediction]["confidence"]))
    fig = _figure(8.0, 5.0)
    ax = fig.subplots()
    ax.hist(
        [correct, wrong],
        bins=np.linspace(0.0, 1.0, 21),
        color=["#009292", "#ff6db6"],
        label=[f"correct ({len(correct)})", f"wrong ({len(wrong)})"],
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("confidence")
    ax.set_ylabel("number of examples")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return _png(fig)


def render_metrics_plot(history: Sequence[Mapping[str, Any]]) -> bytes:
    """PNG line plot of headline scores across model versions, oldest first.

    Each entry is one model, e.g. ``{"version": "v12", "intent_f1": 0.93,
    "entity_f1": 0.88}``; ``None`` or missing values leave a gap.
    """
    names = [str(entry.get("version", i + 1)) for i, entry in enumerate(history)]
    fig = _figure(max(5.0, 0.5 * len(history) + 3.0), 3.5)
    ax = fig.subplots()
    for key, label in (("intent_f1", "intent F1"), ("entity_f1", "entity F1"), ("story_accuracy", "story accuracy")):
        values = [entry.get(key) for entry in history]
        if any(v is not None for v in values):
            ax.plot(range(len(history)), [np.nan if v is None else float(v) for v in values], marker="o", label=label)
    ax.set_xticks(range(len(history)), labels=names, rotation=45, ha="right")
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("score")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left")
    return _png(fig)


def write_metrics_plot(history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write :func:`render_metrics_plot` to ``path``."""
    path = Path(path)
    path.write_bytes(render_metrics_plot(history))
    return path


def _entity_keys(spans: Sequence[Mapping[str, Any]]) -> set[tuple[Any, ...]]:
    return {(s.get("start"), s.get("end"), s.get("entity"), s.get("role"), s.get("group")) for s in spans}


def render_nlu_junit_xml(evaluation: NluEvaluation) -> str:
    """A JUnit report: one case per test example, failing on a wrong intent or wrong entities."""
    import xml.etree.ElementTree as ET  # noqa: PLC0415 - only for this report

    cases = []
    for p in evaluation.predictions:
        mistakes = []
        predicted = p["intent_prediction"]["name"]
        if predicted != p["intent"]:
            mistakes.append(
                f"intent: expected {p['intent']}, predicted {predicted} ({p['intent_prediction']['confidence']:.2f})"
            )
        if _entity_keys(p["entities"]) != _entity_keys(p["entity_predictions"]):
            expected = ", ".join(f"{s['entity']}={s.get('value')!r}" for s in p["entities"]) or "none"
            got = ", ".join(f"{s.get('entity')}={s.get('value')!r}" for s in p["entity_predictions"]) or "none"
            mistakes.append(f"entities: expected {expected}, predicted {got}")
        cases.append((p, mistakes))
    failures = sum(1 for _, mistakes in cases if mistakes)
    suites = ET.Element("testsuites", name="deltatrain", tests=str(len(cases)), failures=str(failures))
    suite = ET.SubElement(
        suites, "testsuite", name="nlu", tests=str(len(cases)), failures=str(failures), errors="0", skipped="0"
    )
    for p, mistakes in cases:
        case = ET.SubElement(suite, "testcase", classname=f"nlu.{p['intent']}", name=p["text"])
        if mistakes:
            failure = ET.SubElement(case, "failure", type="WrongPrediction", message="; ".join(mistakes))
            failure.text = p["text"] + "\n" + "\n".join(mistakes) + "\n"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_nlu_reports(evaluation: NluEvaluation, out_dir: Path) -> list[Path]:
    """Write the JSON reports, the JUnit file and (with the ``plots`` extra) the plots; return the paths."""
    from pipeline.extras import Extra, is_installed  # noqa: PLC0415

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y_true = [p["intent"] for p in evaluation.predictions]
    y_pred = [p["intent_prediction"]["name"] for p in evaluation.predictions]
    plots = is_installed(Extra.PLOTS)
    written = [
        _write_json(out_dir / INTENT_REPORT_FILE, evaluation.intent_report),
        _write_json(out_dir / ENTITY_REPORT_FILE, evaluation.entity_report),
        _write_json(out_dir / INTENT_ERRORS_FILE, list(evaluation.errors)),
        _write_text(out_dir / NLU_JUNIT_FILE, render_nlu_junit_xml(evaluation)),
    ]
    if plots:
        written += [
            _write_bytes(out_dir / CONFUSION_MATRIX_FILE, render_confusion_matrix(y_true, y_pred)),
            _write_bytes(out_dir / HISTOGRAM_FILE, render_confidence_histogram(evaluation.predictions)),
        ]
    if evaluation.response_report is not None:
        rows = evaluation.response_predictions
        keys_true = [p["intent_response_key_target"] for p in rows]
        keys_pred = [p["intent_response_key_prediction"]["name"] for p in rows]
        written += [
            _write_json(out_dir / RESPONSE_REPORT_FILE, evaluation.response_report),
            _write_json(out_dir / RESPONSE_ERRORS_FILE, evaluation.response_errors),
        ]
        if plots:
            matrix = render_confusion_matrix(keys_true, keys_pred, title="Response selection confusion matrix")
            histogram = render_confidence_histogram(
                rows, target="intent_response_key_target", title="Response selection prediction confidence"
            )
            written += [
                _write_bytes(out_dir / RESPONSE_CONFUSION_MATRIX_FILE, matrix),
                _write_bytes(out_dir / RESPONSE_HISTOGRAM_FILE, histogram),
            ]
    return written
