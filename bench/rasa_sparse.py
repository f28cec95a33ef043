"""Rasa 3.x oracle for issue 18: Rasa's default sparse NLU pipeline on HWU64, scored with deltatrain's metrics.

Run by hand (never by the tests). Rasa's 100 epochs on HWU64 need about 4 h of both cores
(~140 s wall, ~200 CPU s an epoch on an idle machine), longer than a working session, so the
training is resumable at epoch boundaries; rerun the same command to continue::

    nohup nice -n 19 python bench/rasa_sparse.py --rasa-venv /work/rasa-venv --nice 19 \\
        --train ../shared/bench/hwu64/train.yml --test ../shared/bench/hwu64/test.yml \\
        --work /work/rasa-hwu64-resumable --json /work/rasa-hwu64-resumable/result.json \\
        >> /work/rasa-hwu64-resumable/driver.log 2>&1 &
    python bench/rasa_sparse.py --work /work/rasa-hwu64-resumable --status   # how far it got

Steps, each skipped when its output already exists in ``--work`` (a scratch folder outside
the repository), so a long run can be resumed and its model reused:

1. write a Rasa project: ``config.yml`` (``--config``, by default ``bench/sparse_config.yml``:
   Rasa's default pipeline without ResponseSelector and FallbackClassifier, i.e.
   WhitespaceTokenizer, RegexFeaturizer, LexicalSyntacticFeaturizer, CountVectorsFeaturizer
   word + char_wb 1-4, DIETClassifier with 100 epochs, EntitySynonymMapper),
   ``data/nlu.yml`` (a copy of ``--train``) and an empty ``domain.yml``;
2. ``rasa train nlu`` under ``nice``, run by the driver ``TRAIN_RESUMABLE`` inside the Rasa venv:
   Rasa's own CLI (same recipe, graph, config and seed) with DIET's keras ``fit`` wrapped so that
   every epoch ends with a checkpoint in ``resume/`` (weights and Adam state, the epoch, the data
   generator's epoch counter behind the 64 -> 256 batch-size ramp, numpy's and Python's RNG
   state behind Rasa's shuffling); a restarted run restores them and continues with
   ``fit(initial_epoch=k)``, so the learning-rate, batch and shuffling schedule is that of an
   uninterrupted run. Only TF's stateful random ops (dropout masks, sampled negatives) restart
   their streams, which TF does not expose. Progress (epoch k/N, seconds, ETA) on the console,
   Rasa's log in ``train.log``, per-epoch and per-session times in ``resume/state.json``;
3. parse every message of ``--test`` with the trained model inside the Rasa venv and write
   the predicted intent, ranking and entities to ``predictions.json``;
4. score them here with deltatrain's own metrics (top-1 intent accuracy and macro F1,
   exact-span entity micro F1 from ``pipeline.metrics``), the same as ``bench/nlu.py``.
"""

from __future__ import annotations

import argparse
import hashlib
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


#: The driver's own lines in its output (progress, resume), echoed to the console; the rest goes to train.log.
PROGRESS_LINE = re.compile(r"\d\d:\d\d:\d\d (epoch \d+/\d+|resumed|training (from|finished))")

#: Where the resumable training keeps its epoch checkpoints and progress, inside ``--work``.
RESUME_DIR = "resume"

# Runs inside the Rasa venv: argv = resume folder, fingerprint of config + data, then `rasa train nlu`'s arguments.
# `rasa train nlu` itself (same recipe, graph, config, seed), with one change: the DIET model's keras
# `fit` gets a callback that checkpoints every epoch (weights + Adam state via tf.train.Checkpoint, the
# epoch, the data generator's epoch counter that drives the 64 -> 256 batch-size ramp, numpy's and
# Python's RNG states, which drive Rasa's shuffling and balancing), and on restart continues from
# the next epoch with `fit(initial_epoch=k)`. TF's stateful random ops (dropout, negative sampling)
# keep their state inside the kernels and cannot be captured: after a resume their streams restart.
TRAIN_RESUMABLE = """\
import json, os, pickle, random, resource, shutil, sys, time
from pathlib import Path

import numpy as np
import tensorflow as tf
from rasa.nlu.classifiers.diet_classifier import DIET
from rasa.utils.tensorflow.data_generator import RasaBatchDataGenerator
from rasa.utils.tensorflow.models import RasaModel

RESUME = Path(sys.argv[1]).resolve()
FINGERPRINT = sys.argv[2]
STATE = RESUME / "state.json"
KEEP = 2  # epoch checkpoints kept on disk
SESSION = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "wall": 0.0, "cpu": 0.0}
SESSION_T0 = time.time()


def cpu_seconds():
    t = os.times()
    return t.user + t.system


def say(text):
    print(time.strftime("%H:%M:%S ", time.gmtime()) + text, flush=True)


def read_state():
    return json.loads(STATE.read_text()) if STATE.exists() else None


def write_state(state):
    tmp = STATE.with_name("state.json.tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, STATE)


def session_record(state):
    SESSION["wall"] = time.time() - SESSION_T0
    SESSION["cpu"] = cpu_seconds()
    SESSION["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    SESSION["updated"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    sessions = state.setdefault("sessions", [])
    if sessions and sessions[-1]["started"] == SESSION["started"]:
        sessions[-1] = dict(SESSION)
    else:
        sessions.append(dict(SESSION))


class EpochCheckpoint(tf.keras.callbacks.Callback):
    def __init__(self, generator, checkpoint, state):
        super().__init__()
        self.generator, self.checkpoint, self.state = generator, checkpoint, state
        self.session_epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.c0 = time.time(), cpu_seconds()
        self.batch_size = self.generator._current_batch_size

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = time.time() - self.t0, cpu_seconds() - self.c0
        if self.generator._current_epoch != epoch:
            raise SystemExit(f"data generator at epoch {self.generator._current_epoch}, keras at {epoch}")
        folder = RESUME / f"epoch-{epoch + 1:04d}"
        shutil.rmtree(folder, ignore_errors=True)
        prefix = self.checkpoint.write(str(folder / "ckpt"))
        with open(folder / "rng.pkl", "wb") as f:
            pickle.dump({"numpy": np.random.get_state(), "python": random.getstate()}, f)
        state = self.state
        state["epochs_done"] = epoch + 1
        state["generator_epoch"] = self.generator._current_epoch
        state["checkpoint"] = os.path.relpath(prefix, RESUME)
        state["rng"] = os.path.relpath(folder / "rng.pkl", RESUME)
        logs = {k: float(v) for k, v in (logs or {}).items()}
        state.setdefault("epochs", []).append(
            {"epoch": epoch + 1, "batch_size": self.batch_size, "wall": wall, "cpu": cpu, "logs": logs,
             "optimizer_step": int(self.model.optimizer.iterations.numpy()),
             "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        )
        session_record(state)
        write_state(state)
        for old in sorted(RESUME.glob("epoch-*"))[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
        self.session_epochs.append(wall)
        total = self.params["epochs"]
        recent = (self.session_epochs[1:] or self.session_epochs)[-5:]  # a session's first epoch also traces
        mean = sum(recent) / len(recent)
        eta = mean * (total - epoch - 1)
        say(f"epoch {epoch + 1}/{total}: batch {self.batch_size}, {wall:.0f} s wall, {cpu:.0f} CPU s,"
            f" t_loss {logs.get('t_loss', float('nan')):.4f}, i_acc {logs.get('i_acc', float('nan')):.4f};"
            f" ETA {eta / 3600:.2f} h ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(time.time() + eta))})")


_keras_fit = tf.keras.Model.fit
_taken = []


def resumable_fit(self, x=None, *args, **kwargs):
    # only the DIET training call of `rasa train nlu`; Rasa's model loading also calls fit
    if _taken or not isinstance(self, DIET) or not isinstance(x, RasaBatchDataGenerator):
        return _keras_fit(self, x, *args, **kwargs)
    _taken.append(True)
    epochs = kwargs.get("epochs", 1)
    checkpoint = tf.train.Checkpoint(model=self, optimizer=self.optimizer)
    state = read_state()
    initial_epoch = 0
    if state is not None and state.get("epochs_done"):
        if state["fingerprint"] != FINGERPRINT or state["total_epochs"] != epochs:
            raise SystemExit(
                f"{STATE} belongs to another training (config/data fingerprint or epochs differ); "
                f"delete {RESUME} to start over"
            )
        # one step on the first batch creates every variable (model and Adam slots), whose values
        # the checkpoint then overwrites; every saved value must find its variable
        _keras_fit(self, x, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        checkpoint.read(str(RESUME / state["checkpoint"])).assert_consumed()
        with open(RESUME / state["rng"], "rb") as f:
            rng = pickle.load(f)
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        # the batches of the next epoch are drawn exactly as in an uninterrupted run
        x._current_epoch = state["generator_epoch"]
        initial_epoch = state["epochs_done"]
        if initial_epoch < epochs:  # else only the archive is missing: no epoch left to draw batches for
            x.on_epoch_end()
        say(f"resumed after epoch {initial_epoch}/{epochs} (optimizer step {int(self.optimizer.iterations.numpy())})"
            + (f", next batch size {x._current_batch_size}" if initial_epoch < epochs else ", writing the model"))
    else:
        state = {"fingerprint": FINGERPRINT, "total_epochs": epochs, "epochs_done": 0}
        say(f"training from epoch 1/{epochs}")
    callbacks = list(kwargs.pop("callbacks", None) or [])
    callbacks.append(EpochCheckpoint(x, checkpoint, state))
    return _keras_fit(self, x, *args, callbacks=callbacks, initial_epoch=initial_epoch, **kwargs)


RasaModel.fit = resumable_fit
RESUME.mkdir(parents=True, exist_ok=True)
sys.argv = ["rasa"] + sys.argv[3:]
from rasa.__main__ import main

try:
    main()
except SystemExit as exit:
    if exit.code not in (0, None):
        raise
state = read_state() or {}
session_record(state)
state["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
write_state(state)
say("training finished")
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


def compute_fingerprint(work: Path) -> str:
    """sha256 of the project's config and data: a checkpoint resumes only the training it belongs to."""
    digest = hashlib.sha256()
    for name in ("config.yml", "data/nlu.yml"):
        digest.update((work / name).read_bytes())
    return digest.hexdigest()


def read_resume_state(work: Path) -> dict[str, Any] | None:
    """The resumable training's progress (``resume/state.json``), or None before its first epoch."""
    path = work / RESUME_DIR / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def is_model_trained(work: Path) -> bool:
    """True when the model archive exists and the training that wrote it finished."""
    archive = work / "models" / f"{MODEL_NAME}.tar.gz"
    if not archive.exists():
        return False
    state = read_resume_state(work)
    if state is not None and "finished" not in state:
        archive.unlink()  # written by a session that was killed before it recorded the end
        return False
    return True


def run_training(work: Path, venv: Path, niceness: int) -> None:
    """``rasa train nlu`` through the resumable driver, under nice; resumes from the last epoch checkpoint."""
    (work / "train_resumable.py").write_text(TRAIN_RESUMABLE)
    command = ["nice", "-n", str(niceness), str(venv / "bin" / "python"), "train_resumable.py"]
    command += [str(work / RESUME_DIR), compute_fingerprint(work)]
    command += ["train", "nlu", "--config", "config.yml", "--nlu", "data/nlu.yml", "--out", "models"]
    command += ["--fixed-model-name", MODEL_NAME]
    if not (work / "train.started").exists():
        (work / "train.started").write_text(time.strftime("%Y-%m-%d %H:%M:%S UTC\n", time.gmtime()))
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
    with open(work / "train.log", "a") as log:
        log.write(f"\n=== session {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} ===\n")
        log.flush()
        process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            progress = PROGRESS_LINE.search(line)  # may follow tqdm's bar on the same line
            if progress is not None:
                print(line[progress.start() :], end="", flush=True)
        returncode = process.wait()
    if returncode != 0:
        raise SystemExit(f"rasa train nlu failed (exit {returncode}); see {work / 'train.log'}")
    (work / "train.finished").write_text(time.strftime("%Y-%m-%d %H:%M:%S UTC\n", time.gmtime()))


def render_progress(state: dict[str, Any]) -> str:
    """One line: epochs done, mean wall and CPU seconds per epoch, sessions so far."""
    epochs = state.get("epochs", [])
    if not epochs:
        return f"0/{state['total_epochs']} epochs done"
    wall = sum(e["wall"] for e in epochs) / len(epochs)
    cpu = sum(e["cpu"] for e in epochs) / len(epochs)
    return (
        f"{state['epochs_done']}/{state['total_epochs']} epochs done in {len(state.get('sessions', []))} session(s),"
        f" mean {wall:.0f} s wall / {cpu:.0f} CPU s per epoch, last checkpoint {epochs[-1]['finished']}"
        + (f", finished {state['finished']}" if "finished" in state else "")
    )


def read_timing(work: Path) -> dict[str, Any]:
    """Wall and CPU seconds and peak memory of the Rasa training (summed over resumed sessions)."""
    state = read_resume_state(work)
    if state is not None:
        sessions = state.get("sessions", [])
        return {
            "wall_seconds": sum(s["wall"] for s in sessions),
            "cpu_seconds": sum(s["cpu"] for s in sessions),
            "epoch_wall_seconds": sum(e["wall"] for e in state.get("epochs", [])),
            "epoch_cpu_seconds": sum(e["cpu"] for e in state.get("epochs", [])),
            "max_rss_mib": max((s.get("max_rss_mib", 0.0) for s in sessions), default=0.0),
            "sessions": len(sessions),
            "started": sessions[0]["started"] if sessions else None,
            "finished": state.get("finished"),
        }
    return read_time_file(work)


def read_time_file(work: Path) -> dict[str, Any]:
    """Wall seconds, CPU seconds and peak memory of a plain ``rasa train nlu`` run from ``time.txt``."""
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
    parser.add_argument("--rasa-venv", type=Path, help="virtualenv with Rasa 3.x (bin/rasa, bin/python)")
    parser.add_argument("--train", type=Path, help="Rasa NLU YAML to train on")
    parser.add_argument("--test", type=Path, help="Rasa NLU YAML to evaluate on")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the Rasa project (outside the repo)")
    parser.add_argument("--config", type=Path, default=SPARSE_CONFIG, help="Rasa config.yml (default: %(default)s)")
    parser.add_argument("--nice", type=int, default=15, help="niceness of the Rasa processes")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    parser.add_argument("--status", action="store_true", help="print how far the training got and exit")
    parser.add_argument("--train-only", action="store_true", help="train (or resume), then exit without scoring")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if args.status:
        state = read_resume_state(work)
        print(render_progress(state) if state is not None else f"{work}: no epoch checkpoint yet")
        return
    missing = [flag for flag, value in (("--rasa-venv", args.rasa_venv), ("--train", args.train), ("--test", args.test)) if value is None]
    if missing:
        parser.error(f"{', '.join(missing)} required (all but --work are optional only with --status)")
    write_project(work, args.train.resolve(), args.config)
    if not is_model_trained(work):
        run_training(work, args.rasa_venv, args.nice)
    if args.train_only:
        return
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
