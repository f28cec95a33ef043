"""Two real `deltatrain ci` runs publishing to one store at once, N rounds per backend (run by hand).

    .venv/bin/python bench/store_concurrency.py                     # 20 rounds, local/http/s3
    .venv/bin/python bench/store_concurrency.py --rounds 3 --backends local

Each round appends one new example to each of two clones of examples/assistant
(so both runs finetune from the same latest model; `--max-drop 1`, since the
tiny models' quality is not what is measured), starts both `deltatrain ci`
processes within milliseconds of each other and waits. After every round it
checks what issue 12 asks for: both runs exit 0 and say `uploaded`, both models
are listed, the manifest parses and has no announcement left over, and every
listed model's archive exists. The stores are a folder, the test suite's HTTP
store on 127.0.0.1 (ETag / If-Match, like WebDAV or Artifactory) and a moto S3
server on 127.0.0.1 (conditional PutObject). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.stores import open_store  # noqa: E402
from tests.helpers import copy_into_git_repo  # noqa: E402

S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class Tally:
    """What one backend's rounds produced."""

    rounds: int = 0
    good_rounds: int = 0
    lost: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)


def _start_store(kind: str, stack: ExitStack, tmp: Path) -> tuple[str, dict[str, str]]:
    """URL and extra environment of a fresh store of ``kind``; servers stop with ``stack``."""
    if kind == "local":
        return str(tmp / f"store-{uuid.uuid4().hex[:6]}"), {}
    if kind == "http":
        from tests.stores.fake_http import FakeStoreServer

        server = FakeStoreServer().start()
        stack.callback(server.stop)
        return server.url("/store/"), {}
    from moto.server import ThreadedMotoServer

    from tests.stores.conftest import _make_moto_conditional_writes_atomic

    _make_moto_conditional_writes_atomic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    stack.callback(server.stop)
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="bench", aws_secret_access_key="bench",
    ).create_bucket(Bucket="bench")
    return "s3://bench/assistant", {**S3_ENV, "DELTATRAIN_S3_ENDPOINT_URL": endpoint}


def _add_example(work: Path, text: str) -> None:
    nlu = work / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace("    - cya\n", f"    - cya\n    - {text}\n", 1))
    repo = git.Repo(work)
    repo.git.add(A=True)
    repo.index.commit(f"add {text!r}")


def _run_pair(works: list[Path], url: str, env: dict[str, str], epochs: int, tmp: Path) -> list[dict[str, Any]]:
    processes = []
    for index, work in enumerate(works):
        report = tmp / f"report-{index}.json"
        report.unlink(missing_ok=True)
        command = [sys.executable, "-m", "pipeline", "ci", "-C", str(work), "--store", url,
                   "--epochs", str(epochs), "--max-drop", "1", "--report-json", str(report)]
        processes.append((time.perf_counter(), report, subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    results = []
    for started, report, process in processes:
        output = process.communicate(timeout=900)[0]
        data = json.loads(report.read_text()) if report.exists() else {}
        results.append({"code": process.returncode, "seconds": time.perf_counter() - started,
                        "report": data, "output": output[-2000:]})
    return results


def run_backend(kind: str, rounds: int, epochs: int) -> Tally:
    """``rounds`` rounds of two simultaneous CI runs against one fresh store of ``kind``."""
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix=f"deltatrain-bench-{kind}-") as name, ExitStack() as stack:
        tmp = Path(name)
        url, extra_env = _start_store(kind, stack, tmp)
        os.environ.update(extra_env)  # this process reads the store with the runs' credentials
        env = {**os.environ, **extra_env, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        for variable in ("GITHUB_ACTIONS", "GITHUB_EVENT_NAME", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
            env.pop(variable, None)
        works = []
        for index in range(2):
            work = tmp / f"clone{index}"
            copy_into_git_repo(ROOT / "examples" / "assistant", work)
            works.append(work)
        first = subprocess.run([sys.executable, "-m", "pipeline", "ci", "-C", str(works[0]), "--store", url,
                                "--epochs", str(epochs)], env=env, capture_output=True, text=True)
        if first.returncode != 0:
            raise SystemExit(f"{kind}: the first full run failed:\n{first.stdout[-2000:]}{first.stderr[-2000:]}")
        reader = open_store(url, base_dir=tmp, s3_endpoint_url=extra_env.get("DELTATRAIN_S3_ENDPOINT_URL"))
        for round_index in range(rounds):
            for index, work in enumerate(works):
                _add_example(work, f"bye number {round_index} from run {index}")
            results = _run_pair(works, url, env, epochs, tmp)
            tally.rounds += 1
            ok = True
            for result in results:
                tally.seconds.append(result["seconds"])
                decision = result["report"].get("decision", "?")
                tally.decisions[decision] = tally.decisions.get(decision, 0) + 1
                if result["code"] != 0 or not result["report"].get("uploaded"):
                    ok = False
                    tally.failures.append(f"round {round_index}: exit {result['code']}: {result['output'][-400:]}")
            manifest = reader.read_manifest()  # parses and validates
            listed = {m["name"] for m in manifest["models"]} if manifest else set()
            for result in results:
                name = result["report"].get("model_name")
                if result["report"].get("uploaded") and name not in listed:
                    ok = False
                    tally.lost.append(f"round {round_index}: {name}")
            if manifest and (manifest.get("publishing") or not all(
                reader.backend.exists(m["archive"]) for m in manifest["models"]
            )):
                ok = False
                tally.failures.append(f"round {round_index}: leftover announcement or missing archive")
            tally.good_rounds += ok
            times = ", ".join(f"{r['seconds']:.1f} s" for r in results)
            print(f"{kind} round {round_index + 1}/{rounds}: {'ok' if ok else 'PROBLEM'} ({times})", flush=True)
            if not ok:
                for line in (tally.lost + tally.failures)[-2:]:
                    print(f"    {line}", flush=True)
    return tally


def main() -> None:
    """Parse arguments, run every backend, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--backends", default="local,http,s3")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    rows = []
    for kind in args.backends.split(","):
        started = time.perf_counter()
        tally = run_backend(kind.strip(), args.rounds, args.epochs)
        rows.append((kind, tally, time.perf_counter() - started))
    print(f"\n### Store concurrency ({platform.node()}, {os.cpu_count()} CPUs, --epochs {args.epochs})\n")
    print("| backend | rounds | rounds with both models listed | models lost | failed runs | decisions |"
          " run time median / max | total |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, tally, total in rows:
        seconds = tally.seconds or [0.0]
        decisions = ", ".join(f"{k} {v}" for k, v in sorted(tally.decisions.items()))
        print(f"| {kind} | {tally.rounds} | {tally.good_rounds} | {len(tally.lost)} | {len(tally.failures)} |"
              f" {decisions} | {statistics.median(seconds):.1f} s / {max(seconds):.1f} s | {total:.0f} s |")
    for kind, tally, _ in rows:
        for line in tally.lost + tally.failures:
            print(f"- {kind}: {line}")


if __name__ == "__main__":
    main()
