"""`make demo`: the CI step four times on the example assistant in a throwaway git repo.

1. first run            -> full      (no previous model in the store)
2. nothing changed      -> skip      (no TensorFlow import, no training)
3. examples appended    -> finetune  (previous weights, a fraction of the epochs)
4. a new intent added   -> finetune  (the label space grows: old weights kept, old examples replayed)

The model store is the embedded default: a local folder, ``.deltatrain/store``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import git

from pipeline import RESULTS_DIR

HERE = Path(__file__).resolve().parent
ASSISTANT = HERE / "assistant"
WORK = HERE.parent / "demo-work"

MORE_EXAMPLES = """    - what will the weather be in [Paris](city) [on saturday](date)
    - any rain expected in [Berlin](city)
    - check the forecast for [Madrid](city)
"""
NEW_INTENT = """
- intent: ask_time
  examples: |
    - what time is it
    - tell me the time
    - what's the time
    - do you know the time
    - current time please
    - what time is it now
"""


def run_step(repo_dir: Path, title: str) -> dict:
    """Run `deltatrain ci` as a user would and return its JSON report."""
    print(f"\n=== {title} ===", flush=True)
    report = repo_dir / "report.json"
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    completed = subprocess.run(
        # The example has 20 held-out NLU examples: one miss moves intent F1 by ~0.05, so the
        # demo allows a drop of 0.1 against the previous model (the default is 0.02).
        [sys.executable, "-m", "pipeline", "ci", "--working-directory", str(repo_dir), "--report-json", str(report),
         "--max-drop", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - started
    if completed.returncode not in (0, 3):
        print(completed.stdout)
        raise SystemExit(f"deltatrain ci failed with exit code {completed.returncode}")
    data = json.loads(report.read_text())
    metrics = {k: v for k, v in data["metrics"].items() if v is not None}
    print(f"decision: {data['decision']}  (NLU {data['nlu']}, dialogue {data['core']})")
    for reason in data["reasons"]:
        print(f"  why: {reason}")
    print("  metrics: " + (", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) or "none"))
    gate = data.get("gate")
    if gate is not None:
        print(f"  quality gate: {'passed' if gate['passed'] else 'FAILED (model not uploaded)'}")
    print(f"  model: {data['model_name']}   uploaded: {'yes' if data['uploaded'] else 'no'}   wall time: {wall:.1f} s")
    return data


def commit(repo: git.Repo, message: str) -> None:
    repo.git.add(A=True)
    repo.index.commit(message)


def main() -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    shutil.copytree(ASSISTANT, WORK)
    (WORK / ".gitignore").write_text(".deltatrain/\nmodels/\nresults/\nreport.json\n")
    repo = git.Repo.init(WORK)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "deltatrain demo")
        cfg.set_value("user", "email", "demo@example.invalid")
    commit(repo, "example assistant")

    decisions = [run_step(WORK, "1. first run on the example assistant")["decision"]]
    decisions.append(run_step(WORK, "2. same commit again")["decision"])

    nlu = WORK / "data" / "nlu.yml"
    text = nlu.read_text()
    anchor = "    - forecast for [tomorrow](date)\n"
    nlu.write_text(text.replace(anchor, anchor + MORE_EXAMPLES))
    commit(repo, "annotate three more weather questions")
    decisions.append(run_step(WORK, "3. three examples added to ask_weather")["decision"])

    nlu.write_text(nlu.read_text() + NEW_INTENT)
    domain = WORK / "domain.yml"
    domain.write_text(domain.read_text().replace("  - inform\n", "  - inform\n  - ask_time\n"))
    commit(repo, "new intent ask_time")
    decisions.append(run_step(WORK, "4. new intent ask_time")["decision"])

    print("\ndecisions:", " -> ".join(decisions))
    print(f"store: {WORK / '.deltatrain' / 'store'}   reports: {WORK / RESULTS_DIR}")
    expected = ["full", "skip", "finetune", "finetune"]
    if decisions != expected:
        raise SystemExit(f"expected {expected}")


if __name__ == "__main__":
    main()
