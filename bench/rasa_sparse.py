"""Rasa 3.x oracle for issue 18: Rasa's default sparse NLU pipeline on HWU64, scored with deltatrain's metrics.

Run by hand (never by the tests); Rasa needs about an hour on 2 cores::

    python bench/rasa_sparse.py --rasa-venv /work/rasa-venv \\
        --train ../shared/bench/hwu64/train.yml --test ../shared/bench/hwu64/test.yml \\
        --work /work/rasa-hwu64 --json /work/rasa-hwu64/result.json

Steps, each skipped when its output already exists in ``--work`` (a scratch folder outside
the repository), so a long run can be resumed and its model reused:

1. write a Rasa project: ``config.yml`` (``--config``, by default ``bench/sparse_config.yml``:
   Rasa's default pipeline without ResponseSelector and FallbackClassifier, i.e.
   WhitespaceTokenizer, RegexFeaturizer, LexicalSyntacticFeaturizer, CountVectorsFeaturizer
   word + char_wb 1-4, DIETClassifier with 100 epochs, EntitySynonymMapper),
   ``data/nlu.yml`` (a copy of ``--train``) and an empty ``domain.yml``;
2. ``rasa train nlu`` under ``nice`` and ``/usr/bin/time -v`` (wall time, peak memory in
   ``time.txt``; Rasa's log in ``train.log``);
3. parse every message of ``--test`` with the trained model inside the Rasa venv and write
   the predicted intent, ranking and entities to ``predictions.json``;
4. score them here with deltatrain's own metrics (top-1 intent accuracy and macro F1,
   exact-span entity micro F1 from ``pipeline.metrics``), the same as ``bench/nlu.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.data.loader import read_nlu_files  # noqa: E402
from pipeline.metrics import classification_report, entity_report  # noqa: E402

MODEL_NAME = "hwu64-sparse"

#: Rasa's default sparse pipeline (DIET 100 epochs); ``bench/nlu.py --config`` trains deltatrain on the same file.
SPARSE_CONFIG = Path(__file__).resolve().parent / "sparse_config.yml"

# Runs inside the Rasa venv: argv = model archive, test texts (JSON list), output file.
PREDICT = """\
import asyncio, json, sys, time
from rasa.core.agent import Agent

agent = Agent.load(sys.argv[1])
texts = json.load(open(sys.argv[2]))
out = []
started = time.perf_counter()
for text in texts:
    parse = asyncio.run(agent.parse_message(text))
    out.append({
        "text": text,
        "intent": parse["intent"],
        "intent_ranking": parse.get("intent_ranking", [])[:5],
        "entities": [
            {k: e.get(k) for k in ("start", "end", "entity", "value", "role", "group", "extractor", "confidence_entity")}
            for e in parse.get("entities", [])
        ],
    })
json.dump({"parse_seconds": time.perf_counter() - started, "predictions": out}, open(sys.argv[3], "w"), indent=1)
"""


def write_project(work: Path, train: Path, config: Path) -> None:
    """Write the scratch Rasa project (config, data copy, empty domain) unless it exists."""
    (work / "data").mkdir(parents=True, exist_ok=True)
    if not (work / "config.yml").exists():
        shutil.copyfile(config, work / "config.yml")
    if not (work / "data" / "nlu.yml").exists():
        shutil.copyfile(train, work / "data" / "nlu.yml")
    if not (work / "domain.yml").exists():
        (work / "domain.yml").write_text('version: "3.1"\n')


def run_training(work: Path, venv: Path, niceness: int) -> None:
    """``rasa train nlu`` under nice and ``/usr/bin/time -v``; log in train.log, timing in time.txt."""
    command = ["/usr/bin/time", "-v", "-o", "time.txt", "nice", "-n", str(niceness), str(venv / "bin" / "rasa")]
    command += ["train", "nlu", "--config", "config.yml", "--nlu", "data/nlu.yml", "--out", "models"]
    command += ["--fixed-model-name", MODEL_NAME]
    (work / "train.started").write_text(time.strftime("%Y-%m-%d %H:%M:%S UTC\n", time.gmtime()))
    with open(work / "train.log", "w") as log:
        done = subprocess.run(command, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    (work / "train.finished").write_text(time.strftime("%Y-%m-%d %H:%M:%S UTC\n", time.gmtime()))
    if done.returncode != 0:
        raise SystemExit(f"rasa train nlu failed (exit {done.returncode}); see {work / 'train.log'}")


def read_timing(work: Path) -> dict[str, Any]:
    """Wall seconds, CPU seconds and peak memory of the Rasa training from ``time.txt``."""
    text = (work / "time.txt").read_text()

    def field(label: str) -> str:
        match = re.search(rf"^\s*{re.escape(label)}: (.+)$", text, re.MULTILINE)
        if match is None:
            raise SystemExit(f"{work / 'time.txt'} has no '{label}' line")
        return match.group(1).strip()

    parts = [float(p) for p in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    return {
        "wall_seconds": wall,
        "cpu_seconds": float(field("User time (seconds)")) + float(field("System time (seconds)")),
        "max_rss_mib": int(field("Maximum resident set size (kbytes)")) / 1024,
        "started": (work / "train.started").read_text().strip() if (work / "train.started").exists() else None,
        "finished": (work / "train.finished").read_text().strip() if (work / "train.finished").exists() else None,
    }


def run_prediction(work: Path, venv: Path, texts: Sequence[str], niceness: int) -> dict[str, Any]:
    """Parse ``texts`` with the trained Rasa model inside the Rasa venv; return predictions.json."""
    (work / "texts.json").write_text(json.dumps(list(texts)))
    (work / "predict.py").write_text(PREDICT)
    model = work / "models" / f"{MODEL_NAME}.tar.gz"
    command = ["nice", "-n", str(niceness), str(venv / "bin" / "python"), "predict.py", str(model), "texts.json"]
    command += ["predictions.json"]
    with open(work / "predict.log", "w") as log:
        done = subprocess.run(command, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"prediction failed (exit {done.returncode}); see {work / 'predict.log'}")
    return json.loads((work / "predictions.json").read_text())


def score(test_file: Path, predictions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """deltatrain's metrics on Rasa's predictions: top-1 intent, exact-span entity micro F1."""
    test = read_nlu_files([test_file])
    if [e.text for e in test.examples] != [p["text"] for p in predictions]:
        raise SystemExit("predictions.json does not match the test file's messages (delete it and rerun)")
    gold = [e.intent for e in test.examples]
    predicted = [(p["intent_ranking"] or [p["intent"]])[0]["name"] for p in predictions]
    report = classification_report(gold, predicted, labels=sorted(set(gold) | set(predicted)))
    entities = entity_report([e.entities for e in test.examples], [p["entities"] for p in predictions])
    return {
        "intent_accuracy": report["accuracy"],
        "intent_macro_f1": report["macro avg"]["f1-score"],
        "entity_f1": entities["micro avg"]["f1-score"],
        "entity_precision": entities["micro avg"]["precision"],
        "entity_recall": entities["micro avg"]["recall"],
        "entity_exact_examples": entities.get("accuracy"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rasa-venv", type=Path, required=True, help="virtualenv with Rasa 3.x (bin/rasa, bin/python)")
    parser.add_argument("--train", type=Path, required=True, help="Rasa NLU YAML to train on")
    parser.add_argument("--test", type=Path, required=True, help="Rasa NLU YAML to evaluate on")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the Rasa project (outside the repo)")
    parser.add_argument("--config", type=Path, default=SPARSE_CONFIG, help="Rasa config.yml (default: %(default)s)")
    parser.add_argument("--nice", type=int, default=15, help="niceness of the Rasa processes")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    write_project(work, args.train.resolve(), args.config)
    if not (work / "models" / f"{MODEL_NAME}.tar.gz").exists():
        run_training(work, args.rasa_venv, args.nice)
    timing = read_timing(work)
    if (work / "predictions.json").exists():
        parsed = json.loads((work / "predictions.json").read_text())
    else:
        test = read_nlu_files([args.test])
        parsed = run_prediction(work, args.rasa_venv, [e.text for e in test.examples], args.nice)
    metrics = score(args.test, parsed["predictions"])
    version = subprocess.run(
        [str(args.rasa_venv / "bin" / "python"), "-c", "import rasa; print(rasa.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    result = {
        "rasa_version": version,
        "train": str(args.train),
        "test": str(args.test),
        "config": (work / "config.yml").read_text(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "timing": timing,
        "parse_seconds": parsed.get("parse_seconds"),
        "metrics": metrics,
    }
    print(
        f"Rasa {version}: intent accuracy {100 * metrics['intent_accuracy']:.2f} %, macro F1"
        f" {100 * metrics['intent_macro_f1']:.2f} %, entity exact-span F1 {100 * metrics['entity_f1']:.2f} %;"
        f" training {timing['wall_seconds']:.0f} s wall, {timing['cpu_seconds']:.0f} CPU s,"
        f" {timing['max_rss_mib']:.0f} MiB peak ({timing['started']} – {timing['finished']})"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
