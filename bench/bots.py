"""Rasa's example assistants, trained and tested by deltatrain and by Rasa 3.6 itself.

Usage (by hand; never run by the tests; each Rasa run takes minutes)::

    python bench/bots.py --bots ../shared/rasa-examples --work /tmp/bots --tool deltatrain \\
        --json /tmp/bots/deltatrain.json
    nice -n 15 python bench/bots.py --bots ../shared/rasa-examples --work /tmp/rasa-bots \\
        --tool rasa --rasa-venv ../rasa-venv --json /tmp/rasa-bots/rasa.json
    python bench/bots.py --table /tmp/bots/deltatrain.json /tmp/rasa-bots/rasa.json

Each bot is copied to ``--work/<bot>`` (the examples stay untouched) and run with its own
``config.yml``: validate (``data validate``), train (wall time), then test with its own test
stories (``tests/`` or ``stories/test_stories.yml``; a bot without test stories is tested on
its training stories and rules, which is what Rasa's ``rasa test`` does when pointed at
``data/``) and its NLU training data. Rasa cannot run two components here without network
access or extra downloads (``LanguageModelFeaturizer`` needs BERT weights from the Hugging
Face hub, ``SpacyNLP`` a spaCy model); when ``rasa train`` fails on them, the bot is run
again with them left out of the config, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: components Rasa cannot load in this sandbox (no network, no spaCy model)
RASA_UNAVAILABLE = ("LanguageModelFeaturizer", "SpacyNLP", "SpacyTokenizer", "SpacyFeaturizer", "SpacyEntityExtractor")
#: extra deltatrain flags per bot (none needed: reminderbot's spaCy components are left out with a warning)
DELTATRAIN_FLAGS: dict[str, list[str]] = {}


def test_stories(bot: Path) -> Path:
    """The bot's own test stories, else its training data."""
    for candidate in (bot / "tests", bot / "stories" / "test_stories.yml"):
        if candidate.exists():
            return candidate
    return bot / "data"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 7200) -> tuple[int, float, str]:
    """Run a command; exit code, wall seconds and the last lines of its output."""
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - start
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return proc.returncode, seconds, tail


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def _reports(results: Path) -> dict[str, Any]:
    """Intent and story results from a results folder (Rasa's and deltatrain's use the same files)."""
    out: dict[str, Any] = {}
    intent = results / "intent_report.json"
    if intent.exists():
        report = json.loads(intent.read_text())
        out["intent_accuracy"] = report.get("accuracy")
        out["intent_f1"] = (report.get("weighted avg") or {}).get("f1-score")
    story = results / "story_report.json"
    if story.exists():
        report = json.loads(story.read_text())
        if "num_stories" in report:  # deltatrain: conversations, then the action report
            out["stories_total"], out["stories_correct"] = report["num_stories"], report["num_correct"]
            report = report.get("action_report") or {}
            out["action_accuracy"] = report.get("accuracy") if (report.get("weighted avg") or {}).get("support") else None
        else:  # Rasa: intents, entities and actions in one report, with conversation accuracy beside it
            conversations = report.get("conversation_accuracy") or {}
            out["stories_total"], out["stories_correct"] = conversations.get("total"), conversations.get("correct")
            out["action_accuracy"] = _rasa_action_accuracy(report, _action_names(results.parent))
    failed = results / "failed_test_stories.yml"
    if failed.exists():
        text = failed.read_text()
        out["failed_stories"] = text.count("- story:")
        # '- intent: x  # predicted: y: text' marks an NLU mistake, '- action: x  # predicted: y' a dialogue one
        out["wrong_user_turns"] = sum(1 for line in text.splitlines() if line.lstrip().startswith("- intent:") and "# predicted:" in line)
        out["wrong_actions"] = sum(1 for line in text.splitlines() if line.lstrip().startswith("- action:") and "# predicted:" in line)
        out["no_failures"] = "None of the test stories failed" in text  # Rasa's words
    summary = results / "summary.json"
    if summary.exists():
        out["summary"] = json.loads(summary.read_text())
    return out


def _action_names(bot: Path) -> set[str]:
    """Actions of a bot's domain: responses, custom actions, forms (Rasa's default actions start with action_)."""
    domain = yaml.safe_load((bot / "domain.yml").read_text()) or {}
    names = set(domain.get("responses") or {}) | set(domain.get("forms") or {})
    names |= {a if isinstance(a, str) else next(iter(a)) for a in domain.get("actions") or []}
    return names


def _rasa_action_accuracy(report: dict[str, Any], actions: set[str]) -> float | None:
    """Share of actions predicted right in Rasa's story report (which also lists intents and entities)."""
    rows = [v for k, v in report.items() if isinstance(v, dict) and "support" in v
            and (k in actions or k.startswith(("action_", "utter_"))) and k not in ("macro avg", "weighted avg", "micro avg")]
    support = sum(r["support"] for r in rows)
    return sum(r["recall"] * r["support"] for r in rows) / support if support else None


def _strip_config(config: Path, names: tuple[str, ...]) -> list[str]:
    """Leave the named components out of a config file; which ones were there."""
    data = yaml.safe_load(config.read_text()) or {}
    pipeline = data.get("pipeline") or []
    removed = [item["name"] for item in pipeline if isinstance(item, dict) and item.get("name") in names]
    data["pipeline"] = [item for item in pipeline if not (isinstance(item, dict) and item.get("name") in names)]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return removed


def run_deltatrain(bot: Path) -> dict[str, Any]:
    """Validate, train and test one bot with deltatrain."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "pipeline"]
    flags = DELTATRAIN_FLAGS.get(bot.name, [])
    row: dict[str, Any] = {"bot": bot.name, "tool": "deltatrain", "flags": flags, "date": _today()}
    code, _, tail = _run(cli + ["data", "validate"] + flags, bot, env)
    row["validate"] = code == 0
    row["validate_tail"] = tail
    code, seconds, tail = _run(cli + ["train", "--fixed-model-name", "bot", "--force"] + flags, bot, env)
    row["train_ok"], row["train_seconds"], row["train_tail"] = code == 0, round(seconds, 1), tail
    if code != 0:
        return row
    stories = test_stories(bot)
    row["test_stories"] = str(stories.relative_to(bot))
    # 'deltatrain test' reads stories and NLU data from every path given, so each part is tested on its own
    # (each into its own folder: a test run replaces its output folder)
    core_out, nlu_out = "results/core", "results/nlu"
    code, seconds, tail = _run(cli + ["test", "core", "--model", "models", "--stories", str(stories), "--out", core_out] + flags, bot, env)
    code_nlu, seconds_nlu, tail_nlu = _run(cli + ["test", "nlu", "--model", "models", "--nlu", "data", "--out", nlu_out] + flags, bot, env)
    row["test_ok"], row["test_seconds"] = code == 0 and code_nlu == 0, round(seconds + seconds_nlu, 1)
    row["test_tail"] = tail + "\n" + tail_nlu
    for out in (nlu_out, core_out):
        row.update({k: v for k, v in _reports(bot / out).items() if v is not None})
    return row


def run_rasa(bot: Path, venv: Path) -> dict[str, Any]:
    """Validate, train and test one bot with Rasa (leaving out components it cannot load here)."""
    rasa = str(venv / "bin" / "rasa")
    # no telemetry (and no error reports to Sentry): the sandbox has no network, and it is not ours to send
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", SQLALCHEMY_SILENCE_UBER_WARNING="1", RASA_TELEMETRY_ENABLED="false")
    row: dict[str, Any] = {"bot": bot.name, "tool": "rasa", "date": _today()}
    code, _, tail = _run([rasa, "data", "validate"], bot, env)
    row["validate"] = code == 0
    row["validate_tail"] = tail
    train = [rasa, "train", "--fixed-model-name", "bot", "--force"]
    code, seconds, tail = _run(train, bot, env)
    if code != 0:
        removed = _strip_config(bot / "config.yml", RASA_UNAVAILABLE)
        if removed:
            row["first_train_tail"] = tail
            row["left_out"] = removed
            code, seconds, tail = _run(train, bot, env)
    row["train_ok"], row["train_seconds"], row["train_tail"] = code == 0, round(seconds, 1), tail
    if code != 0:
        return row
    stories = test_stories(bot)
    row["test_stories"] = str(stories.relative_to(bot))
    code, seconds, tail = _run(
        [rasa, "test", "--model", "models", "--stories", str(stories), "--nlu", "data", "--out", "results", "--no-plot"],
        bot,
        env,
    )
    row["test_ok"], row["test_seconds"], row["test_tail"] = code == 0, round(seconds, 1), tail
    row.update(_reports(bot / "results"))
    return row


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)


def _stories(row: dict[str, Any]) -> str:
    total = row.get("stories_total")
    if total is None:
        return "no failed story" if row.get("no_failures") else "–"
    return f"{row.get('stories_correct')}/{total}"


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table: per bot, deltatrain's result next to Rasa's."""
    tools = ("deltatrain", "rasa")
    ordered = sorted(rows, key=lambda r: (r["bot"], tools.index(r["tool"])))  # stable: runs of a bot keep their order
    lines = [
        "| bot | tool | run (UTC) | validate | train (s) | test stories | intent acc. (NLU data) | action acc. | "
        "stories correct | wrong user turns / actions in failed stories | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ordered:
        train = f"{row['train_seconds']:.0f}" if row.get("train_ok") else "failed"
        notes = [*row.get("flags", []), *([row["note"]] if row.get("note") else [])]
        if row.get("left_out"):
            notes.append("without " + ", ".join(row["left_out"]))
        wrong = f"{row.get('wrong_user_turns', '?')} / {row.get('wrong_actions', '?')}" if row.get("failed_stories") else "–"
        lines.append(
            f"| {row['bot']} | {row['tool']} | {row.get('date', '–')} | {'ok' if row.get('validate') else 'errors'} | "
            f"{train} | {row.get('test_stories', '–')} | {_fmt(row.get('intent_accuracy'))} | "
            f"{_fmt(row.get('action_accuracy'))} | {_stories(row)} | {wrong} | {', '.join(notes)} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Command line: run one tool on the bots, or print the table of saved runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=Path)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--tool", choices=("deltatrain", "rasa"))
    parser.add_argument("--rasa-venv", type=Path, default=Path("/work/rasa-venv"))
    parser.add_argument("--only", nargs="*", default=None, help="these bots only")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", nargs="*", type=Path, help="print the table of these JSON files")
    parser.add_argument("--reread", action="store_true",
                        help="read the reports of the runs in --work again into --json (nothing is run)")
    args = parser.parse_args()
    rows: list[dict[str, Any]]
    if args.reread:
        rows = json.loads(args.json.read_text())
        for row in rows:
            bot = args.work / row["bot"]
            outs = ("results/nlu", "results/core") if row["tool"] == "deltatrain" else ("results",)
            for out in outs:
                if (bot / out).is_dir():
                    row.update({k: v for k, v in _reports(bot / out).items() if v is not None})
        args.json.write_text(json.dumps(rows, indent=2))
        return
    if args.table:
        rows = [row for path in args.table for row in json.loads(path.read_text())]
        print(table(rows))
        return
    rows = json.loads(args.json.read_text()) if args.json and args.json.exists() else []
    names = args.only or sorted(p.name for p in args.bots.iterdir() if (p / "config.yml").exists())
    for name in names:
        bot = args.work / name
        if bot.exists():
            shutil.rmtree(bot)
        shutil.copytree(args.bots / name, bot)
        row = run_rasa(bot, args.rasa_venv) if args.tool == "rasa" else run_deltatrain(bot)
        rows = [r for r in rows if r["bot"] != name] + [row]
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        print(json.dumps({k: row.get(k) for k in ("bot", "validate", "train_ok", "train_seconds", "test_ok")}), flush=True)


if __name__ == "__main__":
    main()
