"""Evolving a model (issue 17): finetune through new intents and new entity types vs a full retrain.

Usage::

    nice -n 10 python bench/evolve.py ../shared/bench/hwu64 [--json out.json]

Scenario *intents*: 4 intents chosen by a fixed seed are held out (all their
training examples); a base model trains on the rest; then (a) a finetune of
the base on all of train.yml (``--epoch-fraction``, 0.2) and (b) a full
retrain on train.yml. Scenario *entities*: the same with the annotations of 2
entity types (chosen by the same seed among types with 50-400 mentions)
stripped from the base data (the texts stay). Every training runs in a fresh
Python process (``bench/nlu.py``'s worker), so the wall times include the
interpreter, TensorFlow import, featurizing, training and saving.

Reported on test.yml: intent accuracy, entity exact-span micro F1, and recall
of the new labels (intent recall on the new intents' test examples; entity
F1 on the new types' spans), finetune vs retrain, and the wall ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from nlu import run_worker as _run_worker  # noqa: E402

from pipeline.data.loader import read_nlu_files  # noqa: E402
from pipeline.data.model import NluData  # noqa: E402
from pipeline.metrics import classification_report, entity_report  # noqa: E402

SEED = 17
NEW_INTENTS = 4
NEW_ENTITY_TYPES = 2
ENTITY_MENTIONS = (50, 400)  # new entity types are drawn among types with this many mentions in train.yml


def _blocks(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Header and ``(intent, block text)`` of a Rasa NLU YAML file written one intent per block."""
    parts = re.split(r"(?m)^(?=- intent: )", text)
    blocks = []
    for part in parts[1:]:
        name = re.match(r'- intent: "?([^"\n]+)"?', part).group(1)  # type: ignore[union-attr]
        blocks.append((name, part))
    return parts[0], blocks


def choose_intents(train: NluData, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(list(train.intents), size=NEW_INTENTS, replace=False).tolist())


def choose_entity_types(train: NluData, seed: int, mentions: tuple[int, int] = ENTITY_MENTIONS) -> list[str]:
    counts: dict[str, int] = {}
    for example in train.examples:
        for span in example.entities:
            counts[span.entity] = counts.get(span.entity, 0) + 1
    low, high = mentions
    candidates = sorted(e for e, n in counts.items() if low <= n <= high)
    rng = np.random.default_rng(seed + 1)
    return sorted(rng.choice(candidates, size=NEW_ENTITY_TYPES, replace=False).tolist())


def write_without_intents(train_file: Path, intents: Sequence[str], out: Path) -> Path:
    header, blocks = _blocks(train_file.read_text(encoding="utf-8"))
    out.write_text(header + "".join(b for name, b in blocks if name not in intents), encoding="utf-8")
    return out


def write_without_entities(train_file: Path, entities: Sequence[str], out: Path) -> Path:
    text = train_file.read_text(encoding="utf-8")
    pattern = re.compile(r"\[([^\]]+)\]\((?:%s)\)" % "|".join(map(re.escape, entities)))
    out.write_text(pattern.sub(r"\1", text), encoding="utf-8")
    return out


def evaluate(model_dir: Path, test: NluData, new_intents: Sequence[str] = (), new_entities: Sequence[str] = ()) -> dict[str, Any]:
    """Intent accuracy, entity F1 and the new labels' recall/F1 of a saved model on ``test``."""
    from pipeline.training.nlu import NluModel

    model = NluModel.load(model_dir)
    parses = model.parse_batch([e.text for e in test.examples])
    gold = [e.intent for e in test.examples]
    predicted = [p["intent"]["name"] for p in parses]
    report = classification_report(gold, predicted)
    entities = entity_report([e.entities for e in test.examples], [p["entities"] for p in parses])
    result: dict[str, Any] = {
        "intent_accuracy": report["accuracy"],
        "entity_f1": entities["micro avg"]["f1-score"],
    }
    if new_intents:
        index = [i for i, g in enumerate(gold) if g in new_intents]
        result["new_intent_recall"] = sum(predicted[i] == gold[i] for i in index) / len(index)
        result["new_intent_test_examples"] = len(index)
    if new_entities:
        only = entity_report(
            [[s for s in e.entities if s.entity in new_entities] for e in test.examples],
            [[x for x in p["entities"] if x["entity"] in new_entities] for p in parses],
        )
        result["new_entity_f1"] = only["micro avg"]["f1-score"]
        result["new_entity_recall"] = only["micro avg"]["recall"]
        result["new_entity_test_mentions"] = int(only["micro avg"]["support"])
    return result


def _uptime() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split(" ", 3)[:3])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=SEED, help="chooses the held-out intents and entity types")
    parser.add_argument("--train-seed", type=int, default=42)
    parser.add_argument("--epoch-fraction", type=float, default=0.2)
    parser.add_argument("--set", action="append", help="Component.option=value override of the default pipeline")
    parser.add_argument("--language", default="en")
    parser.add_argument("--skip", action="append", default=[], choices=["intents", "entities"])
    parser.add_argument("--entity-mentions", default="%d,%d" % ENTITY_MENTIONS,
                        help="new entity types are drawn among types with this many mentions (low,high)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reuse-retrain", type=Path,
                        help="JSON of an earlier run: take the full retrain's wall time and metrics from it (saves a training)")
    parser.add_argument("--work-dir", type=Path,
                        help="keep the models here (default: a temporary folder); a base model already there, trained on"
                        " the same data with the same seed and overrides, is reused with its recorded wall time (saves a training)")
    args = parser.parse_args(argv)
    train_file, test_file = args.folder / "train.yml", args.folder / "test.yml"
    train, test = read_nlu_files([train_file]), read_nlu_files([test_file])
    worker_args = argparse.Namespace(seed=args.train_seed, language=args.language, set=args.set or [], config=None)
    intents, entity_types = choose_intents(train, args.seed), choose_entity_types(
        train, args.seed, tuple(int(x) for x in args.entity_mentions.split(","))  # type: ignore[arg-type]
    )
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "seed": args.seed, "epoch_fraction": args.epoch_fraction,
                               "new_intents": intents, "new_entity_types": entity_types, "load": []}
    print(f"new intents {intents}; new entity types {entity_types}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-evolve-") as tmp:
        tmp_path = args.work_dir or Path(tmp)
        tmp_path.mkdir(parents=True, exist_ok=True)
        results["load"].append(_uptime())
        earlier = json.loads(args.reuse_retrain.read_text()) if args.reuse_retrain else None
        if earlier is not None:
            retrain = earlier["retrain"]["summary"]
            results["retrain"] = {"summary": retrain, "reused_from": str(args.reuse_retrain)}
        else:
            retrain = run_worker("full", [train_file], tmp_path / "retrain", worker_args)
            results["retrain"] = {"summary": _short(retrain)}
        print(f"retrain {retrain['wall_seconds_process']:.1f} s", flush=True)
        for scenario, new_intents, new_entities in (("intents", intents, []), ("entities", [], entity_types)):
            if scenario in args.skip:
                continue
            base_file = (
                write_without_intents(train_file, intents, tmp_path / "base-intents.yml") if new_intents
                else write_without_entities(train_file, entity_types, tmp_path / "base-entities.yml")
            )
            results["load"].append(_uptime())
            base = _base_model(base_file, tmp_path / f"base-{scenario}", worker_args)
            finetune = run_worker(
                "finetune", [train_file], tmp_path / f"finetune-{scenario}", worker_args,
                previous=tmp_path / f"base-{scenario}", epoch_fraction=args.epoch_fraction,
            )
            results["load"].append(_uptime())
            row = {
                "base": {"summary": _short(base), "metrics": evaluate(tmp_path / f"base-{scenario}", test, new_intents, new_entities)},
                "finetune": {"summary": _short(finetune), "metrics": evaluate(tmp_path / f"finetune-{scenario}", test, new_intents, new_entities)},
                "retrain": {"metrics": earlier[scenario]["retrain"]["metrics"] if earlier is not None
                            else evaluate(tmp_path / "retrain", test, new_intents, new_entities)},
                "wall_ratio_process": finetune["wall_seconds_process"] / retrain["wall_seconds_process"],
                "cpu_ratio_process": finetune["cpu_seconds_process"] / retrain["cpu_seconds_process"],
            }
            results[scenario] = row
            print(json.dumps({scenario: {k: v for k, v in row.items()}}, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(render_table(results))


def run_worker(kind: str, data: Sequence[Path], out: Path, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """``bench/nlu.py``'s worker, with the machine's load average before and after (the machine is shared)."""
    before = _uptime()
    summary = _run_worker(kind, data, out, args, **extra)
    summary["load"] = [before, _uptime()]
    return summary


def _base_model(data: Path, out: Path, worker_args: argparse.Namespace) -> dict[str, Any]:
    """Train the base model into ``out``, or reuse the one there when it was trained on the same data
    with the same seed and overrides (its summary, wall time included, is kept beside it)."""
    key = {
        "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "seed": worker_args.seed,
        "set": sorted(worker_args.set),
        "language": worker_args.language,
    }
    record = out.with_suffix(".json")
    if record.is_file() and out.is_dir():
        kept = json.loads(record.read_text())
        if kept.get("key") == key:
            print(f"reusing the base model {out} (trained {kept['summary'].get('date', 'earlier')})", flush=True)
            return dict(kept["summary"], reused=str(out))
    summary = run_worker("full", [data], out, worker_args)
    summary["date"] = time.strftime("%Y-%m-%d %H:%M")
    record.write_text(json.dumps({"key": key, "summary": summary}))
    return summary


def _short(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("mode", "reused", "epochs_run", "epochs_planned", "wall_seconds", "wall_seconds_process", "cpu_seconds_process",
            "num_examples", "new_examples", "replayed_per_epoch", "intents_added", "entities_added",
            "featurize_seconds", "load")
    return {k: summary[k] for k in keys if k in summary}


def render_table(results: dict[str, Any]) -> str:
    lines = ["| scenario | run | wall (fresh process) | CPU s | intent acc % | entity F1 % | new labels % |", "|---|---|---:|---:|---:|---:|---:|"]
    for scenario, new_key in (("intents", "new_intent_recall"), ("entities", "new_entity_f1")):
        if scenario not in results:
            continue
        row = results[scenario]
        retrain_summary = results["retrain"]["summary"]
        for name, summary in (("base", row["base"]["summary"]), ("finetune", row["finetune"]["summary"]), ("retrain", retrain_summary)):
            m = row[name]["metrics"]
            lines.append(
                f"| {scenario} | {name} | {summary['wall_seconds_process']:.1f} s | {summary['cpu_seconds_process']:.0f}"
                f" | {100 * m['intent_accuracy']:.2f} | {100 * m['entity_f1']:.2f} | {100 * m[new_key]:.2f} |"
            )
        lines.append(f"| {scenario} | finetune/retrain | ratio {row['wall_ratio_process']:.3f} | ratio {row['cpu_ratio_process']:.3f} | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
