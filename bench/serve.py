"""Serving benchmark: `deltatrain serve` on the HWU64 model under load, and a hot swap under load.

Usage (from the repository root)::

    python bench/serve.py /work/shared/bench/hwu64 [--cache /tmp/deltatrain-bench-serve]
        [--clients 1,4,16,64] [--seconds 10] [--swap-seconds 20] [--json out.json]

Preparation (cached in ``--cache``; the first run trains, about 2-4 minutes on 2 busy cores):
the real CI step (``deltatrain ci``, default English pipeline: ``config.yml`` is
only ``language: en``) trains the base model on ``increments/base.yml`` into a
store, then -- the data grown by ``increments/added.yml`` and committed -- finetunes
it into a second store, as CI does on a push.

Measurements:

* the in-process limit: ``parse_batch`` over the test messages in batches of
  ``--max-batch`` (and ``parse`` one at a time), in this process;
* the server (``deltatrain serve`` in its own process, following a local
  store) under a load generator in another process (asyncio + aiohttp client,
  N concurrent clients, each sending the next test message when its answer
  arrives): requests/s, p50/p99/max latency, failures;
* a hot swap mid-load (16 clients) for a local store and for an HTTP store:
  the finetuned model is published (``ModelStore.publish``, the CI step's
  upload: archive, side files, manifest last) while the load runs; failed
  requests, the max latency around the swap, and the time from the manifest
  write to the first answer from the new model (``X-Deltatrain-Model`` header);
* the server's RSS (``/proc/<pid>/status`` VmRSS) with one model and its peak
  (VmHWM) after the swap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.serve.settings import default_to_one_blas_thread  # noqa: E402

default_to_one_blas_thread(os.environ)  # as `deltatrain serve` does, so the in-process limit is comparable

CONFIG = "language: en\nassistant_id: hwu64\n"
TEXT_RE = re.compile(r"^\s+- (.*)$")
ANNOTATION_RE = re.compile(r"\[([^\]]*)\]\([^)]*\)|\[([^\]]*)\]\{[^}]*\}")


# ------------------------------------------------------------------ preparation


def _run(argv: Sequence[str], cwd: Path, log: Path) -> None:
    started = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        code = subprocess.call(["nice", "-n", "10", *argv], cwd=cwd, stdout=out, stderr=out,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit code {code}; see {log}")
    print(f"  {' '.join(argv[2:5])}... {time.perf_counter() - started:.0f} s", file=sys.stderr)


def prepare(data: Path, cache: Path) -> dict[str, Path]:
    """Train (once) the base model and the finetuned one with the real CI step; their stores."""
    import git

    project, base_store, finetune_store = cache / "project", cache / "store-base", cache / "store-finetune"
    log = cache / "prepare.log"
    if (finetune_store / "manifest.json").is_file():
        return {"project": project, "base": base_store, "finetune": finetune_store}
    if cache.exists():
        shutil.rmtree(cache)
    (project / "data").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "config.yml").write_text(CONFIG)
    shutil.copy(data / "increments" / "base.yml", project / "data" / "nlu.yml")
    shutil.copy(data / "test.yml", project / "tests" / "test.yml")
    (project / ".gitignore").write_text(".deltatrain/\nmodels/\nresults/\n")
    repo = git.Repo.init(project)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "bench")
        cfg.set_value("user", "email", "bench@example.invalid")
    repo.git.add(A=True)
    repo.index.commit("HWU64 base")
    print("preparing: full training of the base model (CI step)", file=sys.stderr)
    _run([sys.executable, "-m", "pipeline", "ci", "--store", str(base_store), "--min-intent-f1", "0"], project, log)
    shutil.copytree(base_store, finetune_store)
    added = (data / "increments" / "added.yml").read_text()
    with open(project / "data" / "added.yml", "w") as out:
        out.write(added)
    repo.git.add(A=True)
    repo.index.commit("HWU64 added examples")
    print("preparing: finetune on the added examples (CI step)", file=sys.stderr)
    _run([sys.executable, "-m", "pipeline", "ci", "--store", str(finetune_store), "--min-intent-f1", "0"], project, log)
    return {"project": project, "base": base_store, "finetune": finetune_store}


def read_texts(path: Path) -> list[str]:
    """The plain texts of a Rasa NLU YAML file (annotations removed)."""
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := TEXT_RE.match(line):
            texts.append(ANNOTATION_RE.sub(lambda m: m.group(1) or m.group(2) or "", match.group(1)))
    return texts


def latest_folder(store: Path) -> Path:
    """The folder of the store's latest model."""
    name: str = json.loads((store / "manifest.json").read_text())["latest"]
    return store / "models" / name


def publish_folder(store_url: str, folder: Path, base_dir: Path) -> float:
    """Publish a stored model (archive, fingerprint, metadata, metrics) into another store; the wall time
    right after the manifest was written."""
    from pipeline.stores import open_store

    store = open_store(store_url, base_dir=base_dir)
    side = {name: json.loads((folder / f"{name}.json").read_text()) for name in ("fingerprint", "metadata", "metrics")}
    store.publish(folder / "model.tar.gz", name=folder.name, keep=10, **side)
    return time.time()


# ------------------------------------------------------------------ in-process limit


def measure_in_process(archive: Path, texts: list[str], max_batch: int, seconds: float) -> dict[str, Any]:
    """parse_batch throughput (batches of max_batch) and one-at-a-time parse, in this process."""
    from pipeline.serve.loaded import load_model_archive

    model = load_model_archive(archive, source=str(archive))
    assert model.nlu is not None
    result: dict[str, Any] = {"load_seconds": round(model.load_seconds, 2)}
    for label, size in (("batch", max_batch), ("single", 1)):
        done, index, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            chunk = [texts[(index + i) % len(texts)] for i in range(size)]
            model.nlu.parse_batch(chunk) if size > 1 else model.nlu.parse(chunk[0])
            done += size
            index += size
        result[f"{label}_per_second"] = round(done / (time.perf_counter() - started), 1)
    return result


# ------------------------------------------------------------------ server process


class Server:
    """``deltatrain serve`` in its own process; its URL from the log; RSS from /proc."""

    def __init__(self, args: Sequence[str], log: Path) -> None:
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "serve", "--port", "0", *args],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=log.parent,
        )
        assert self.process.stderr is not None
        deadline, self.url = time.monotonic() + 120, ""
        while not self.url and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}; see {log}")
            self.log.write(line)
            if match := re.search(r"listening on (http://[\d.]+:\d+)", line):
                self.url = match.group(1)
        self._drain = threading.Thread(target=self._copy, daemon=True)
        self._drain.start()

    def _copy(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if '"path"' not in line:  # keep the server log, not one access line per request
                self.log.write(line)

    def memory_mb(self) -> dict[str, float]:
        """VmRSS (now) and VmHWM (peak) of the server process in MB."""
        values = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
        return values

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._drain.join(timeout=5)
        self.log.close()
        return code


# ------------------------------------------------------------------ load generator (own process)


async def _load(url: str, clients: int, seconds: float, texts: list[str]) -> list[list[Any]]:
    import aiohttp

    records: list[list[Any]] = []
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(index: int) -> None:
            n = index
            while time.perf_counter() < stop_at:
                text = texts[n % len(texts)]
                n += clients
                wall, started = time.time(), time.perf_counter()
                try:
                    async with session.post(url + "/model/parse", json={"text": text}) as response:
                        await response.read()
                        status, model = response.status, response.headers.get("X-Deltatrain-Model", "")
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    status, model = -1, type(exc).__name__
                records.append([wall, time.perf_counter() - started, status, model])

        await asyncio.gather(*(client(i) for i in range(clients)))
    return records


def load_worker(url: str, clients: int, seconds: float, texts_file: Path, out: Path) -> None:
    """Entry of the load-generator process: write [wall start, latency s, status, model] per request."""
    texts = json.loads(texts_file.read_text())
    records = asyncio.run(_load(url, clients, seconds, texts))
    out.write_text(json.dumps(records))


def run_load(url: str, clients: int, seconds: float, texts_file: Path, work: Path) -> subprocess.Popen[bytes]:
    """Start the load generator in its own process."""
    out = work / f"load-{clients}-{time.time():.0f}.json"
    process = subprocess.Popen([sys.executable, __file__, "--load-worker", url, str(clients), str(seconds),
                                str(texts_file), str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    process.out = out  # type: ignore[attr-defined]
    return process


def finish_load(process: subprocess.Popen[bytes]) -> list[list[Any]]:
    """Wait for the load generator; its records."""
    if process.wait(timeout=600) != 0:
        raise SystemExit("the load generator failed")
    records: list[list[Any]] = json.loads(process.out.read_text())  # type: ignore[attr-defined]
    return records


def summarize(records: list[list[Any]], seconds: float) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms), failures."""
    latencies = sorted(r[1] for r in records if r[2] == 200)
    failures = sum(1 for r in records if r[2] != 200)

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else 0.0

    return {"requests": len(records), "failures": failures, "per_second": round(len(latencies) / seconds, 1),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(latencies[-1] * 1000, 1) if latencies else 0.0}


# ------------------------------------------------------------------ scenarios


def swap_under_load(kind: str, store_url: str, server_args: list[str], folder: Path, base_dir: Path,
                    texts_file: Path, work: Path, seconds: float, poll: float) -> dict[str, Any]:
    """16 clients; publish the finetuned model after a third of the time; what the clients saw."""
    server = Server(["--store", store_url, "--poll-seconds", str(poll), *server_args], work / f"server-{kind}.log")
    try:
        before = server.memory_mb()
        load = run_load(server.url, 16, seconds, texts_file, work)
        time.sleep(seconds / 3)
        published = publish_folder(store_url, folder, base_dir)
        records = finish_load(load)
        after = server.memory_mb()
        status = json.loads(_get(server.url + "/status"))
    finally:
        code = server.stop()
    new = [r for r in records if r[3] == folder.name and r[2] == 200]
    first_new = min((r[0] + r[1] for r in new), default=None)
    window = [r for r in records if published - 1 <= r[0] <= (first_new or published) + 1]
    return {
        "store": kind,
        **summarize(records, seconds),
        "publish_to_first_new_answer_s": round(first_new - published, 2) if first_new else None,
        "answers_from_new_model": len(new),
        "max_ms_around_swap": round(max((r[1] for r in window), default=0) * 1000, 1),
        "load_seconds": status["model"]["load_seconds"],
        "fetch_seconds": status["model"]["fetch_seconds"],
        "served_after": status["model_file"],
        "reload_error": status["reload"]["last_reload_error"],
        "rss_mb_before": before.get("VmRSS"),
        "rss_mb_after": after.get("VmRSS"),
        "peak_rss_mb": after.get("VmHWM"),
        "exit_code": code,
    }


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
    return body.decode()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the HWU64 folder (train.yml, test.yml, increments/)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/deltatrain-bench-serve"))
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--seconds", type=float, default=10.0, help="load per client level")
    parser.add_argument("--swap-seconds", type=float, default=20.0, help="load during each swap run")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=1, help="server processes for the client levels (1)")
    parser.add_argument("--skip-swaps", action="store_true", help="measure the client levels only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        levels = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error(f"--clients takes numbers separated by commas, received {args.clients!r}")
    stores = prepare(args.data, args.cache)
    work = args.cache / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir()
    texts = read_texts(args.data / "test.yml")
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts))
    base, finetuned = latest_folder(stores["base"]), latest_folder(stores["finetune"])
    tuning = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} CPUs",
        "uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "messages": len(texts), "base_model": base.name, "finetuned_model": finetuned.name,
        "base_metrics": json.loads((base / "metrics.json").read_text()),
        "finetuned_metrics": json.loads((finetuned / "metrics.json").read_text()),
    }
    print("in-process limit", file=sys.stderr)
    results["in_process"] = measure_in_process(base / "model.tar.gz", texts, args.max_batch, args.seconds)

    local = work / "store-local"
    shutil.copytree(stores["base"], local)
    port = []
    if args.workers > 1:  # workers share a fixed port
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = ["--port", str(probe.getsockname()[1])]
    server = Server(["--store", str(local), "--poll-seconds", "0", "--workers", str(args.workers), *tuning, *port],
                    work / "server-levels.log")
    if args.workers > 1:
        time.sleep(10)  # the other workers load their model too
    try:
        results["rss_mb_one_model"] = server.memory_mb()
        results["levels"] = []
        for clients in levels:
            print(f"{clients} clients", file=sys.stderr)
            before = json.loads(_get(server.url + "/status"))["batching"]
            summary = summarize(finish_load(run_load(server.url, clients, args.seconds, texts_file, work)), args.seconds)
            after = json.loads(_get(server.url + "/status"))["batching"]
            batches = after["batches"] - before["batches"]
            mean_batch = (after["messages"] - before["messages"]) / batches if batches else 0.0
            results["levels"].append({"clients": clients, **summary,
                                      # /status answers from one worker: batch sizes only for one
                                      "mean_batch_size": round(mean_batch, 2) if args.workers == 1 else None,
                                      "share_of_in_process_limit": round(
                                          summary["per_second"] / results["in_process"]["batch_per_second"], 2)})
        results["rss_mb_after_levels"] = server.memory_mb()
    finally:
        results["levels_exit_code"] = server.stop()

    results["workers"] = args.workers
    if args.skip_swaps:
        _finish(results, args.json)
        return
    print("hot swap, local store", file=sys.stderr)
    swap_local = work / "store-swap-local"
    shutil.copytree(stores["base"], swap_local)
    results["swaps"] = [swap_under_load("local", str(swap_local), tuning, finetuned, work, texts_file, work,
                                        args.swap_seconds, args.poll_seconds)]

    print("hot swap, HTTP store", file=sys.stderr)
    from tests.stores.fake_http import FakeStoreServer  # a real HTTP object store on 127.0.0.1

    http = FakeStoreServer().start()
    try:
        publish_folder(http.url("/store/"), base, work)
        results["swaps"].append(swap_under_load("http", http.url("/store/"), tuning, finetuned, work, texts_file,
                                                work, args.swap_seconds, args.poll_seconds))
    finally:
        http.stop()
    _finish(results, args.json)


def _finish(results: dict[str, Any], out: Path | None) -> None:
    results["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(results, indent=2))
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load-worker":
        load_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5]), Path(sys.argv[6]))
    else:
        main()
