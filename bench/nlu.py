"""NLU benchmark: full training, the incremental (finetune) scenario and a scikit-learn peer.

Usage::

    python bench/nlu.py ../shared/bench/hwu64 [--set DIETClassifier.epochs=30 ...] [--json out.json]

The folder holds Rasa NLU YAML: ``train.yml``, ``test.yml``,
``increments/base.yml`` and ``increments/added.yml``. Every training runs in
a fresh Python process (as in CI), so its wall time includes the interpreter,
the TensorFlow import, reading the data, featurizing, training and saving the
model; the in-process training time is reported too. Evaluation loads the
saved model (NumPy only) in this process.

Metrics on ``test.yml``: intent accuracy and macro F1 (top-1 intent; the
accuracy after the FallbackClassifier is shown as well), entity micro F1 over
exact spans (``pipeline.metrics.entity_report``), parse latency for single
messages. Peer: TF-IDF (word 1-2 + char_wb 1-5) + LinearSVC for intents and
a CRF (sklearn-crfsuite) for entities.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.data.loader import read_nlu_files  # noqa: E402
from pipeline.data.model import Component, Config, NluData, freeze  # noqa: E402
from pipeline.metrics import classification_report, entity_report  # noqa: E402

FALLBACK = "nlu_fallback"


# ------------------------------------------------------------------- config


def read_pipeline(path: Path) -> Config:
    """The config of a team's ``config.yml`` (its NLU pipeline and language); a problem in it ends the run."""
    from pipeline.data.config import read_config
    from pipeline.data.readers import Collector
    from pipeline.data.yamlio import parse_yaml

    out = Collector(str(path))
    config = read_config(parse_yaml(path.read_bytes(), str(path)), out)
    errors = [p for p in out.problems if p.severity == "error"]
    if errors:
        raise SystemExit("\n".join(str(p) for p in errors))
    return config


def build_config(overrides: Sequence[str], language: str = "en", config_file: Path | None = None) -> Config:
    """deltatrain's default pipeline for ``language`` (English: with pretrained features; any
    other: sparse features only), or the pipeline of ``config_file``, with ``Component.option=value``
    overrides (values parsed as JSON); a component missing from it is added before DIETClassifier
    (``LanguageModelFeaturizer.layers=6``)."""
    from pipeline.data.config import default_pipeline

    if config_file is not None:
        base = read_pipeline(config_file)
        language, pipeline = base.language, base.pipeline or default_pipeline(base.language)
    else:
        pipeline = default_pipeline(language)
    components = [(c.name, dict(c.options)) for c in pipeline]
    for item in overrides:
        target, _, raw = item.partition("=")
        name, _, option = target.partition(".")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        matches = [options for component, options in components if component == name]
        if not matches:  # a component the default pipeline lacks: add it before the classifier
            at = next(i for i, (component, _) in enumerate(components) if component == "DIETClassifier")
            components.insert(at, (name, {}))
            matches = [components[at][1]]
        matches[-1 if name == "CountVectorsFeaturizer" and "char" in option else 0][option] = value
    return Config(language=language, pipeline=tuple(Component(n, freeze(o)) for n, o in components))


# ------------------------------------------------------------------- worker


def worker(args: argparse.Namespace) -> None:
    """Train (full or finetune) in this process and save the model; print a JSON line."""
    started = time.perf_counter()
    from pipeline.training.nlu import finetune_nlu, train_nlu

    data = read_nlu_files([Path(p) for p in args.data])
    config = build_config(args.set or [], args.language, args.config)
    if args.worker == "full":
        model = train_nlu(data, config, seed=args.seed)
    else:
        model = finetune_nlu(Path(args.previous), data, config, epoch_fraction=args.epoch_fraction, seed=args.seed)
    model.save(Path(args.out))
    summary = dict(model.summary)
    summary["process_seconds"] = time.perf_counter() - started
    print("RESULT " + json.dumps(summary))
    from pipeline.cli import exit_process

    exit_process(0)  # ends the process the way the deltatrain command does


def run_worker(
    kind: str, data: Sequence[Path], out: Path, args: argparse.Namespace, seed: int | None = None, **extra: Any
) -> dict[str, Any]:
    """Run a training worker in a fresh interpreter; return its summary with the process wall time."""
    seed = args.seed if seed is None else seed
    command = [sys.executable, __file__, "--worker", kind, "--out", str(out), "--seed", str(seed)]
    command += ["--language", args.language]
    if args.config is not None:
        command += ["--config", str(args.config.resolve())]
    command += ["--data", *map(str, data)]
    for item in args.set or []:
        command += ["--set", item]
    if kind == "finetune":
        command += ["--previous", str(extra["previous"]), "--epoch-fraction", str(extra["epoch_fraction"])]
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"worker {kind} failed:\n{done.stderr[-4000:]}")
    line = [out for out in done.stdout.splitlines() if out.startswith("RESULT ")][-1]
    summary = json.loads(line[len("RESULT ") :])
    summary["wall_seconds_process"] = wall
    # CPU seconds (user + system) of the worker: steadier than wall time on a shared machine
    summary["cpu_seconds_process"] = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return summary


# --------------------------------------------------------------- evaluation


def evaluate(model_dir: Path, test: NluData) -> dict[str, Any]:
    """Intent accuracy/macro F1, entity exact-span micro F1 and parse latency of a saved model."""
    from pipeline.training.nlu import NluModel

    started = time.perf_counter()
    model = NluModel.load(model_dir)
    load_seconds = time.perf_counter() - started
    texts = [e.text for e in test.examples]
    latencies = []
    parses = []
    for text in texts:
        t0 = time.perf_counter()
        parses.append(model.parse(text))
        latencies.append(time.perf_counter() - t0)
    gold = [e.intent for e in test.examples]
    top1 = [next(r["name"] for r in p["intent_ranking"] if r["name"] != FALLBACK) for p in parses]
    after_fallback = [p["intent"]["name"] for p in parses]
    report = classification_report(gold, top1, labels=sorted(set(gold) | set(top1)))
    entities = entity_report([e.entities for e in test.examples], [p["entities"] for p in parses])
    latencies.sort()
    return {
        "intent_accuracy": report["accuracy"],
        "intent_macro_f1": report["macro avg"]["f1-score"],
        "intent_accuracy_after_fallback": sum(g == p for g, p in zip(gold, after_fallback)) / len(gold),
        "fallback_rate": sum(p == FALLBACK for p in after_fallback) / len(gold),
        "entity_f1": entities["micro avg"]["f1-score"],
        "entity_precision": entities["micro avg"]["precision"],
        "entity_recall": entities["micro avg"]["recall"],
        "parse_p50_ms": 1000 * latencies[len(latencies) // 2],
        "parse_p90_ms": 1000 * latencies[int(len(latencies) * 0.9)],
        "load_seconds": load_seconds,
    }


# --------------------------------------------------------------------- peer


def _crf_features(words: Sequence[str], i: int) -> dict[str, Any]:
    word = words[i]
    features: dict[str, Any] = {
        "bias": 1.0,
        "lower": word.lower(),
        "suffix3": word[-3:].lower(),
        "suffix2": word[-2:].lower(),
        "prefix3": word[:3].lower(),
        "upper": word.isupper(),
        "title": word.istitle(),
        "digit": word.isdigit(),
    }
    for offset in (-2, -1, 1, 2):
        j = i + offset
        if 0 <= j < len(words):
            features[f"{offset}:lower"] = words[j].lower()
            features[f"{offset}:title"] = words[j].istitle()
        else:
            features[f"{offset}:pad"] = True
    return features


def run_peer(train: NluData, test: NluData) -> dict[str, Any]:
    """TF-IDF + LinearSVC intents and a BIO CRF for entities (scikit-learn, sklearn-crfsuite)."""
    import sklearn_crfsuite
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    from pipeline.training.nlu.tokenizer import Tokenizer

    started = time.perf_counter()
    texts = [e.text for e in train.examples]
    intents = make_pipeline(
        make_union(
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True),
        ),
        LinearSVC(C=1.0),
    )
    intents.fit(texts, [e.intent for e in train.examples])
    tokenizer = Tokenizer()

    def sequence(example: Any) -> tuple[list[dict[str, Any]], list[str], list[Any]]:
        tokens = tokenizer.tokenize(example.text)
        words = [t.text for t in tokens]
        labels = ["O"] * len(tokens)
        for span in example.entities:
            inside = [i for i, t in enumerate(tokens) if t.start < span.end and t.end > span.start]
            for k, i in enumerate(inside):
                labels[i] = ("B-" if k == 0 else "I-") + span.entity
        return [_crf_features(words, i) for i in range(len(words))], labels, tokens

    train_sequences = [sequence(e) for e in train.examples]
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=0.1, max_iterations=100)
    crf.fit([s[0] for s in train_sequences], [s[1] for s in train_sequences])
    train_seconds = time.perf_counter() - started

    predicted_intents = list(intents.predict([e.text for e in test.examples]))
    test_sequences = [sequence(e) for e in test.examples]
    predicted_tags = crf.predict([s[0] for s in test_sequences])
    predicted_spans = []
    for (_, _, tokens), tags in zip(test_sequences, predicted_tags):
        spans: list[dict[str, Any]] = []
        for i, tag in enumerate(tags):
            if tag == "O":
                continue
            entity = tag[2:]
            if tag.startswith("I-") and spans and spans[-1]["entity"] == entity and spans[-1]["last"] == i - 1:
                spans[-1]["end"], spans[-1]["last"] = tokens[i].end, i
            else:
                spans.append({"entity": entity, "start": tokens[i].start, "end": tokens[i].end, "last": i})
        predicted_spans.append(spans)
    gold = [e.intent for e in test.examples]
    report = classification_report(gold, predicted_intents, labels=sorted(set(gold) | set(predicted_intents)))
    entities = entity_report([e.entities for e in test.examples], predicted_spans)
    return {
        "train_seconds": train_seconds,
        "intent_accuracy": report["accuracy"],
        "intent_macro_f1": report["macro avg"]["f1-score"],
        "entity_f1": entities["micro avg"]["f1-score"],
    }


# ---------------------------------------------------------------------- main


def _row(name: str, wall: str, metrics: dict[str, Any]) -> str:
    return (
        f"| {name} | {wall} | {100 * metrics['intent_accuracy']:.2f} | {100 * metrics['intent_macro_f1']:.2f}"
        f" | {100 * metrics['entity_f1']:.2f} |"
    )


def _wall(summary: dict[str, Any]) -> str:
    return (
        f"{summary['wall_seconds_process']:.1f} s ({summary['wall_seconds']:.1f} s in-process,"
        f" {summary['cpu_seconds_process']:.0f} CPU s)"
    )


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items)


def _seeds(text: str) -> list[int]:
    """``--finetune-seeds 42,7,1`` -> [42, 7, 1]."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 42,7,1; received {text!r}") from None
    return seeds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--set", action="append", help="Component.option=value override of the default pipeline")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--language", default="en", help="language of the default pipeline (en: with pretrained features; e.g. de: sparse only)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="train with this config.yml's NLU pipeline and language instead of deltatrain's default (--set still applies)",
    )
    parser.add_argument("--epoch-fraction", type=float, default=0.2)
    parser.add_argument(
        "--finetune-seeds",
        type=_seeds,
        default=[42, 7, 1],
        help="finetune the base model once per seed (comma-separated; the metrics and wall time are averaged)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=["full", "incremental", "peer"])
    parser.add_argument("--json", type=Path, help="also write all measurements to this JSON file")
    parser.add_argument("--worker", choices=["full", "finetune"], help=argparse.SUPPRESS)
    parser.add_argument("--data", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--previous", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.folder is None:
        parser.error("the benchmark folder is required")
    folder = args.folder
    train_file, test_file = folder / "train.yml", folder / "test.yml"
    base_file, added_file = folder / "increments" / "base.yml", folder / "increments" / "added.yml"
    test = read_nlu_files([test_file])
    results: dict[str, Any] = {
        "folder": str(folder),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "config": str(args.config) if args.config else None,
        "overrides": args.set or [],
        "seed": args.seed,
    }
    lines = ["| run | wall | intent acc % | intent macro F1 % | entity exact F1 % |", "|---|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="bench-nlu-") as tmp:
        tmp_path = Path(tmp)
        if "full" not in args.skip:
            summary = run_worker("full", [train_file], tmp_path / "full", args)
            metrics = evaluate(tmp_path / "full", test)
            results["full"] = {"summary": summary, "metrics": metrics}
            lines.append(_row("full train (train.yml)", _wall(summary), metrics))
            print(lines[-1], flush=True)
        if "incremental" not in args.skip:
            base = run_worker("full", [base_file], tmp_path / "base", args)
            base_metrics = evaluate(tmp_path / "base", test)
            lines.append(_row("base train (base.yml)", _wall(base), base_metrics))
            print(lines[-1], flush=True)
            finetunes = []
            for seed in args.finetune_seeds:
                finetune = run_worker(
                    "finetune",
                    [base_file, added_file],
                    tmp_path / f"finetune-{seed}",
                    args,
                    seed=seed,
                    previous=tmp_path / "base",
                    epoch_fraction=args.epoch_fraction,
                )
                finetune_metrics = evaluate(tmp_path / f"finetune-{seed}", test)
                finetunes.append({"seed": seed, "summary": finetune, "metrics": finetune_metrics})
                lines.append(
                    _row(f"finetune base+added (fraction {args.epoch_fraction}, seed {seed})", _wall(finetune), finetune_metrics)
                )
                print(lines[-1], flush=True)
            retrain = run_worker("full", [base_file, added_file], tmp_path / "retrain", args)
            retrain_metrics = evaluate(tmp_path / "retrain", test)
            lines.append(_row("full retrain base+added", _wall(retrain), retrain_metrics))
            print(lines[-1], flush=True)
            mean = {key: _mean(f["metrics"][key] for f in finetunes) for key in ("intent_accuracy", "intent_macro_f1", "entity_f1")}
            finetune_wall, finetune_inner, finetune_cpu = (
                _mean(f["summary"][key] for f in finetunes)
                for key in ("wall_seconds_process", "wall_seconds", "cpu_seconds_process")
            )
            if len(finetunes) > 1:
                lines.append(
                    f"| finetune, mean of {len(finetunes)} seeds | {finetune_wall:.1f} s ({finetune_inner:.1f} s in-process,"
                    f" {finetune_cpu:.0f} CPU s)"
                    f" | {100 * mean['intent_accuracy']:.2f} | {100 * mean['intent_macro_f1']:.2f} | {100 * mean['entity_f1']:.2f} |"
                )
            results["incremental"] = {
                "base": {"summary": base, "metrics": base_metrics},
                "finetunes": finetunes,
                "finetune_mean": mean,
                "retrain": {"summary": retrain, "metrics": retrain_metrics},
                "wall_ratio_process": finetune_wall / retrain["wall_seconds_process"],
                "wall_ratio_in_process": finetune_inner / retrain["wall_seconds"],
                "cpu_ratio_process": finetune_cpu / retrain["cpu_seconds_process"],
                "accuracy_gap_points": 100 * (retrain_metrics["intent_accuracy"] - mean["intent_accuracy"]),
            }
        if "peer" not in args.skip:
            train = read_nlu_files([train_file])
            peer = run_peer(train, test)
            results["peer"] = peer
            lines.append(
                f"| peer: TF-IDF+LinearSVC / CRF (train.yml) | {peer['train_seconds']:.1f} s |"
                f" {100 * peer['intent_accuracy']:.2f} | {100 * peer['intent_macro_f1']:.2f}"
                f" | {100 * peer['entity_f1']:.2f} |"
            )
            print(lines[-1], flush=True)
    print()
    print("\n".join(lines))
    if "full" in results:
        m = results["full"]["metrics"]
        print(
            f"\nparse p50 {m['parse_p50_ms']:.2f} ms, p90 {m['parse_p90_ms']:.2f} ms;"
            f" intent accuracy after fallback {100 * m['intent_accuracy_after_fallback']:.2f}%"
            f" (fallback rate {100 * m['fallback_rate']:.1f}%); epochs run"
            f" {results['full']['summary']['epochs_run']}/{results['full']['summary']['epochs_planned']}"
        )
    if "incremental" in results:
        inc = results["incremental"]
        print(
            f"finetune/retrain wall: {inc['wall_ratio_process']:.3f} (fresh processes),"
            f" {inc['wall_ratio_in_process']:.3f} (in-process); CPU time {inc['cpu_ratio_process']:.3f};"
            f" intent accuracy gap (retrain - finetune"
            f" mean of {len(inc['finetunes'])}) {inc['accuracy_gap_points']:+.2f} points"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
