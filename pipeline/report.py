"""Render the CI step's result: Markdown summary, step outputs. Pure (no I/O).

Names, file names, reasons and notes come from training data and the store:
each is rendered as one Markdown line (code span or escaped text), so it can
neither break the layout nor add HTML. Redaction and log safety happen where
the text is written (:mod:`pipeline.safe_output`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pipeline.ci import CiResult
from pipeline.decision import DecisionKind
from pipeline.errors import DeltatrainError, prefix_path
from pipeline.fingerprint import SECTION_TITLES
from pipeline.metrics import CI_METRICS
from pipeline.safe_output import render_markdown_code as _code
from pipeline.safe_output import render_markdown_text as _text

DECISION_ICONS = {DecisionKind.SKIP: "⏭️", DecisionKind.REPACKAGE: "📦", DecisionKind.FINETUNE: "🔁", DecisionKind.FULL: "🏗️"}
METRIC_TITLES = {metric.key: metric.title for metric in CI_METRICS}
#: The ``decision`` output of a run that failed (data, usage, config, store or unexpected error).
ERROR_DECISION = "error"


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _delta(current: Any, previous: Any) -> str:
    if current is None or previous is None:
        return ""
    diff = float(current) - float(previous)
    return f"{diff:+.3f}"


def render_summary(result: CiResult, path_prefix: str = "") -> str:
    """The Markdown job summary / PR comment body; file paths are prefixed with ``path_prefix``."""
    d = result.decision
    lines = [f"## deltatrain: {DECISION_ICONS.get(d.kind, '')} `{d.kind}`", ""]
    if d.check_only:
        lines += ["_check only: nothing was trained_", ""]
    lines += ["**Why**", ""] + [f"- {_text(r)}" for r in d.reasons] + [""]
    if d.trains or d.kind == DecisionKind.REPACKAGE:
        lines += [f"NLU model: **{_text(str(d.nlu))}**, dialogue model: **{_text(str(d.core))}**", ""]
    if result.fell_back_to_full:
        lines += ["> ⚠️ The finetuned model failed the quality gate and was retrained in full in this run.", ""]
    for note in (*d.notes, *result.notes):
        lines.append(f"> {_text(note)}")
    if d.notes or result.notes:
        lines.append("")
    lines += _changes_section(result)
    lines += _metrics_section(result)
    lines += _predictions_section(result)
    if result.gate is not None:
        verdict = "passed ✅" if result.gate.passed else "failed ❌"
        lines += [f"**Quality gate {verdict}**", ""] + [
            f"- {'✅' if c.passed else '❌'} {_text(c.reason)}" for c in result.gate.checks
        ] + [""]
    lines += ["| | |", "|---|---|"]
    lines.append(f"| Model | {_code(result.model_name or '–', in_table=True)} |")
    if result.model_url:
        lines.append(f"| Stored at | {_text(result.model_url, in_table=True)} |")
    lines.append(f"| Previous model | {_code(result.previous_model or '–', in_table=True)} |")
    lines.append(f"| Uploaded | {'yes' if result.uploaded else 'no'} |")
    if result.git.get("commit"):
        lines.append(f"| Commit | {_code(str(result.git['commit'])[:10], in_table=True)} |")
    for key, value in result.timings.items():
        lines.append(f"| {key.replace('_seconds', '').replace('_', ' ')} time | {value:.1f} s |")
    lines.append("")
    if result.rasa_defaults_differing:
        count = len(result.rasa_defaults_differing)
        lines += [f"<details><summary>{count} Rasa default(s) deltatrain changes for this config "
                  "(set the option in config.yml to get Rasa's value)</summary>", ""]
        lines += [f"- {_text(line)}" for line in result.rasa_defaults_differing]
        lines += ["", "</details>", ""]
    if result.warnings:
        lines += [f"<details><summary>{len(result.warnings)} data warning(s)</summary>", ""]
        lines += [f"- {_text(prefix_path(p.location, path_prefix) + ': ' if p.location else '')}"
                  f"{p.severity}: {_text(p.message)}" for p in result.warnings]
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def _changes_section(result: CiResult) -> list[str]:
    changes = result.decision.changes
    lines: list[str] = []
    report = result.change_report or {}
    if report.get("base"):
        lines.append(f"**Changes** {_code(str(report['base'])[:10] + '..' + str(report['head'])[:10])} "
                     f"({_text(str(report.get('commits', 0)))} commit(s))")
        lines.append("")
        for file in report.get("files", [])[:20]:
            lines.append(f"- {_code(str(file))}")
        if report.get("note"):
            lines.append(f"- {_text(str(report['note']))}")
        lines.append("")
    elif report.get("note"):
        lines += [f"_{_text(str(report['note']))}_", ""]
    if changes is None:
        return lines
    if changes.changed_sections:
        titles = ", ".join(SECTION_TITLES.get(s, s) for s in changes.changed_sections if not s.endswith("without_epochs"))
        lines += [f"Changed: {titles}", ""]
    if changes.examples_added or changes.examples_removed:
        lines += ["| Intent | Examples added | Examples removed |", "|---|---:|---:|"]
        for intent in sorted(set(changes.examples_added) | set(changes.examples_removed)):
            lines.append(f"| {_code(intent, in_table=True)} | {changes.examples_added.get(intent, 0)} "
                         f"| {changes.examples_removed.get(intent, 0)} |")
        lines.append("")
    return lines


def _metrics_section(result: CiResult) -> list[str]:
    if not result.metrics or all(v is None for v in result.metrics.values()):
        return []
    lines = ["| Metric | This model | Previous | Δ |", "|---|---:|---:|---:|"]
    for key, title in METRIC_TITLES.items():
        current = result.metrics.get(key)
        previous = result.previous_metrics.get(key)
        if current is None and previous is None:
            continue
        lines.append(f"| {title} | {_fmt(current)} | {_fmt(previous)} | {_delta(current, previous)} |")
    return lines + [""]


#: Fixed, broken and harmed intents shown in the summary (all of them are in --report-json).
TOP_CHANGES = 10


def _predictions_section(result: CiResult) -> list[str]:
    """Utterances fixed and broken, and per-intent F1 before/after (most harmed first)."""
    diff = result.prediction_diff
    if diff is None:
        return []
    lines = [f"**Predictions vs the previous model** ({diff.compared} shared test utterances: "
             f"{len(diff.fixed)} fixed, {len(diff.broken)} broken)", ""]
    for title, rows in (("Broken", diff.broken), ("Fixed", diff.fixed)):
        if not rows:
            continue
        lines += [f"{title} (top {min(TOP_CHANGES, len(rows))} of {len(rows)}):", "",
                  "| Utterance | Gold | Previous → now |", "|---|---|---|"]
        for row in rows[:TOP_CHANGES]:
            change = (f"{_code(row.old_intent, in_table=True)} {row.old_confidence:.2f} → "
                      f"{_code(row.new_intent, in_table=True)} {row.new_confidence:.2f}"
                      + (" (entities changed)" if row.entities_changed else ""))
            lines.append(f"| {_text(row.text, in_table=True)} | {_code(row.gold, in_table=True)} | {change} |")
        lines.append("")
    harmed = [i for i in diff.intents if i.delta != 0][:TOP_CHANGES]
    if harmed:
        lines += ["| Intent | Support | F1 before | F1 now | Δ |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {_code(i.intent, in_table=True)} | {i.support} | {i.f1_before:.3f} | {i.f1_after:.3f} | {i.delta:+.3f} |"
                  for i in harmed]
        lines.append("")
    return lines


def relative_to(path: str | None, base: Path | None) -> str:
    """``path`` relative to ``base`` when inside it (later steps run there), else as given."""
    if not path or base is None:
        return path or ""
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path


def _number(value: Any) -> str:
    return "" if value is None else f"{float(value):.4f}"


def _metric_output(key: str) -> Callable[[CiResult, Path | None], str]:
    return lambda result, _: _number(result.metrics.get(key))


def _dropped_intents(result: CiResult) -> str:
    checks = result.gate.checks if result.gate else ()
    return ",".join(label for check in checks if not check.passed for label in check.labels)


#: The step outputs (``$GITHUB_OUTPUT``, GitLab dotenv), in action.yml's order: name and value of a result.
#: action.yml and the GitLab component document exactly these (tests/test_outputs.py holds them to it).
OUTPUTS: tuple[tuple[str, Callable[[CiResult, Path | None], str]], ...] = (
    ("decision", lambda result, _: result.decision.kind),
    ("reason", lambda result, _: result.decision.reason),
    ("model-name", lambda result, _: result.model_name or ""),
    ("model-path", lambda result, workspace: relative_to(result.model_path, workspace)),
    ("model-url", lambda result, _: result.model_url or ""),
    *((metric.output, _metric_output(metric.key)) for metric in CI_METRICS if metric.output),
    ("previous-model", lambda result, _: result.previous_model or ""),
    ("dry-run-code", lambda result, _: str(result.decision.code)),
    ("dropped-intents", lambda result, _: _dropped_intents(result)),
)
OUTPUT_NAMES: tuple[str, ...] = tuple(name for name, _ in OUTPUTS)


def build_outputs(result: CiResult, workspace: Path | None = None) -> dict[str, str]:
    """Step outputs (``$GITHUB_OUTPUT``, GitLab dotenv): names as in action.yml.

    ``model-path`` is relative to ``workspace`` (the repository root of the job).
    """
    return {name: value(result, workspace) for name, value in OUTPUTS}


def build_error_outputs(error: DeltatrainError) -> dict[str, str]:
    """The outputs of a failed run: ``decision=error`` and the error as the ``reason``."""
    return {"decision": ERROR_DECISION, "reason": error.message}
