"""Benchmark the CI step itself: full, skip and finetune wall times (run by hand).

    .venv/bin/python bench/ci_steps.py examples/assistant
    .venv/bin/python bench/ci_steps.py ../shared/bench/hwu64

For an assistant folder: full on the committed data, skip on the same commit,
finetune after appending a few examples. For an NLU benchmark folder
(train/test/increments): full on increments/base.yml, skip, then finetune with
increments/added.yml appended, test data from test.yml. Each step is a fresh
`deltatrain ci` process, as in CI (TensorFlow import included). Prints a
Markdown table to append to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import git

ROOT = Path(__file__).resolve().parents[1]


def _commit(repo: git.Repo, message: str) -> None:
    repo.git.add(A=True)
    repo.index.commit(message)


def _step(work: Path, label: str, extra: list[str]) -> dict:
    report = work.parent / f"{label}.json"
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "ci", "-C", str(work), "--report-json", str(report), "--max-drop", "1", *extra],
        capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if completed.returncode not in (0, 3):
        raise SystemExit(f"{label} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    data = json.loads(report.read_text())
    data["wall"] = wall
    print(f"{label}: decision {data['decision']} in {wall:.1f} s; metrics {data['metrics']}", flush=True)
    return data


def _prepare_assistant(source: Path, work: Path) -> tuple[Path, str]:
    shutil.copytree(source, work)
    return work / "data" / "nlu.yml", "    - forecast for [tomorrow](date)\n"


def _prepare_benchmark(source: Path, work: Path) -> None:
    (work / "data").mkdir(parents=True)
    (work / "tests").mkdir()
    shutil.copy(source / "increments" / "base.yml", work / "data" / "nlu.yml")
    shutil.copy(source / "test.yml", work / "tests" / "nlu_test.yml")
    (work / "config.yml").write_text("language: en\npipeline:\npolicies:\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", type=Path, help="an assistant folder or an NLU benchmark folder")
    parser.add_argument("--epochs", type=int, help="override epochs (default: the project's config)")
    args = parser.parse_args()
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    with tempfile.TemporaryDirectory(prefix="deltatrain-bench-") as tmp:
        work = Path(tmp, "repo")
        benchmark = (args.project / "increments").is_dir()
        if benchmark:
            _prepare_benchmark(args.project, work)
        else:
            shutil.copytree(args.project, work)
        (work / ".gitignore").write_text(".deltatrain/\nmodels/\nresults/\n")
        repo = git.Repo.init(work)
        with repo.config_writer() as cfg:
            cfg.set_value("user", "name", "bench")
            cfg.set_value("user", "email", "bench@example.invalid")
        _commit(repo, "data")
        full = _step(work, "full", extra)
        skip = _step(work, "skip", extra)
        nlu = work / "data" / "nlu.yml"
        if benchmark:
            added = (args.project / "increments" / "added.yml").read_text()
            nlu.write_text(nlu.read_text() + "\n" + added.split("nlu:", 1)[1])
        else:
            anchor = "    - forecast for [tomorrow](date)\n"
            nlu.write_text(nlu.read_text().replace(anchor, anchor + "    - any rain in [Rome](city)\n    - how warm is [Oslo](city)\n"))
        _commit(repo, "more examples")
        finetune = _step(work, "finetune", extra)
    name = args.project.resolve().name
    print()
    print(f"### CI step on `{name}` — {date.today()}, {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| step | decision | wall (s) | train (s) | test (s) | intent F1 | entity F1 | story acc. |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, data in (("first run", full), ("no change", skip), ("examples added", finetune)):
        m = data["metrics"]
        fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        t = data.get("timings", {})
        print(f"| {label} | {data['decision']} | {data['wall']:.1f} | {fmt(t.get('train_seconds'))} | "
              f"{fmt(t.get('test_seconds'))} | {fmt(m.get('intent_f1'))} | "
              f"{fmt(m.get('entity_f1'))} | {fmt(m.get('story_accuracy'))} |")
    print(f"\nfinetune/full wall ratio: {finetune['wall'] / full['wall']:.2f}")
    print(f"command: .venv/bin/python bench/ci_steps.py {args.project}" + (f" --epochs {args.epochs}" if args.epochs else ""))


if __name__ == "__main__":
    main()
