"""Serving benchmark: `deltatrain serve` on the HWU64 model under load, and a hot swap under load.

Usage (from the repository root)::

    python bench/serve.py /work/shared/bench/hwu64 [--cache /tmp/deltatrain-bench-serve]
        [--clients 1,4,16,64] [--workers 1,2] [--seconds 10] [--swap-seconds 20] [--json out.json]

Preparation (cached in ``--cache``; the first run trains, about 4-7 minutes on 2 busy cores):
the real CI step (``deltatrain ci``, default English pipeline: ``config.yml`` is
only ``language: en``) trains the base model on ``increments/base.yml`` into a
store, then -- the data grown by ``increments/added.yml`` and committed -- finetunes
it into a second store, as CI does on a push.

Measurements (printed as the Markdown tables of bench/RESULTS.md; ``--json`` keeps every number):

* the in-process limit: ``parse_batch`` over the test messages in batches of
  ``--max-batch`` in one call, the same batches in length-sorted chunks as the
  server parses them, and ``parse`` one at a time, in this process, with the
  CPU time per message of each;
* the server (``deltatrain serve`` in its own process, following a local
  store; once per ``--workers`` value) under a load generator in another
  process (N concurrent clients, each sending the next test message when its
  answer arrives; ``--load-client raw`` keeps one HTTP/1.1 connection per
  client and costs the machine a fifth of aiohttp's client): requests/s,
  p50/p99/max latency, failures, mean batch size, and the CPU time per request
  of the server (all its processes and threads, from /proc) and of the load
  generator -- on a shared machine the CPU times are the stable numbers;
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

from pipeline.serve.settings import (  # noqa: E402
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_WAIT_MS,
    MODEL_HEADER,
    default_to_one_blas_thread,
)

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
    """parse_batch throughput in this process: batches of max_batch in one call, the same batches in
    length-sorted chunks as the server parses them, and ``parse`` one at a time (per second and CPU ms)."""
    from pipeline.serve.batching import split_by_length
    from pipeline.serve.loaded import load_model_archive
    from pipeline.serve.settings import PARSE_CHUNK

    model = load_model_archive(archive, source=str(archive))
    nlu = model.nlu
    assert nlu is not None

    def chunked(batch: list[str]) -> None:
        for part in split_by_length(batch, PARSE_CHUNK, key=len):
            nlu.parse_batch(part)

    ways = {"batch": (max_batch, nlu.parse_batch), "chunked": (max_batch, chunked),
            "single": (1, lambda batch: nlu.parse(batch[0]))}
    result: dict[str, Any] = {"load_seconds": round(model.load_seconds, 2), "chunk": PARSE_CHUNK}
    for label, (size, run) in ways.items():
        done, index, started, cpu = 0, 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds:
            run([texts[(index + i) % len(texts)] for i in range(size)])
            done += size
            index += size
        result[f"{label}_per_second"] = round(done / (time.perf_counter() - started), 1)
        result[f"{label}_cpu_ms"] = round((time.process_time() - cpu) / done * 1000, 3)
    result["limit_per_second"] = max(result["batch_per_second"], result["chunked_per_second"])
    # what one core would do if this process had it to itself (the wall-clock rate shares it)
    result["one_core_per_second"] = round(1000 / min(result["batch_cpu_ms"], result["chunked_cpu_ms"]), 1)
    return result


# ------------------------------------------------------------------ server process


class Server:
    """``deltatrain serve`` in its own process (and its workers); its URL from the log; RSS and CPU
    from /proc."""

    def __init__(self, args: Sequence[str], log: Path, *, workers: int = 1, port: int = 0) -> None:
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "serve", "--port", str(port), "--workers", str(workers), *args],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=log.parent,
        )
        assert self.process.stderr is not None
        deadline, urls = time.monotonic() + 180, list[str]()
        while len(urls) < workers and time.monotonic() < deadline:  # every worker has loaded its model
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}; see {log}")
            self.log.write(line)
            if match := re.search(r"listening on (http://[\d.]+:\d+)", line):
                urls.append(match.group(1))
        if len(urls) < workers:
            raise SystemExit(f"the server did not start {workers} workers in time; see {log}")
        self.url = urls[0]
        self._drain = threading.Thread(target=self._copy, daemon=True)
        self._drain.start()

    def _copy(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if '"path"' not in line:  # keep the server log, not one access line per request
                self.log.write(line)

    def pids(self) -> list[int]:
        """The server process and its forked workers."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [self.process.pid, *(int(pid) for pid in children)]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its workers so far (all their threads)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def memory_mb(self) -> dict[str, float]:
        """VmRSS (now) and VmHWM (peak) in MB of the serving process (the first worker with workers)."""
        pids = self.pids()
        values = {}
        for line in Path(f"/proc/{pids[-1]}/status").read_text().splitlines():
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


async def _load_aiohttp(url: str, clients: int, seconds: float, texts: list[str]) -> list[list[Any]]:
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
                        status, model = response.status, response.headers.get(MODEL_HEADER, "")
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    status, model = -1, type(exc).__name__
                records.append([wall, time.perf_counter() - started, status, model])

        await asyncio.gather(*(client(i) for i in range(clients)))
    return records


def build_requests(host: str, texts: list[str]) -> list[bytes]:
    """One complete HTTP/1.1 keep-alive POST /model/parse per text, encoded once."""
    requests = []
    for text in texts:
        body = json.dumps({"text": text}).encode()
        head = (f"POST /model/parse HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        requests.append(head.encode() + body)
    return requests


def read_head(head: bytes) -> tuple[int, int, str]:
    """Status, Content-Length and the model header of a response head (status line and headers)."""
    lines = head.decode("latin-1").split("\r\n")
    status, length, model = int(lines[0].split(" ", 2)[1]), 0, ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == MODEL_HEADER.lower():
            model = value.strip()
    return status, length, model


async def _load_raw(url: str, clients: int, seconds: float, texts: list[str]) -> list[list[Any]]:
    """The same closed loop as the aiohttp client with a fraction of its CPU: each client keeps one
    HTTP/1.1 connection and writes pre-encoded requests (the body is read in full, not decoded)."""
    host, _, port = url.removeprefix("http://").partition(":")
    requests = build_requests(f"{host}:{port}", texts)
    records: list[list[Any]] = []
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        n = index
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.perf_counter() < stop_at:
            request = requests[n % len(requests)]
            n += clients
            wall, started = time.time(), time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection(host, int(port))
                reader, writer = connection
                writer.write(request)
                status, length, model = read_head(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60))
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                    ValueError) as exc:
                status, model = -1, type(exc).__name__
                if connection is not None:
                    connection[1].close()
                connection = None
            records.append([wall, time.perf_counter() - started, status, model])
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return records


#: Load generators: ``raw`` (default) spends about a fifth of the aiohttp client's CPU per request,
#: which on 2 cores is CPU the server gets; ``aiohttp`` is what Rasa's own server would use.
LOAD_CLIENTS = {"raw": _load_raw, "aiohttp": _load_aiohttp}


def load_worker(url: str, clients: int, seconds: float, texts_file: Path, out: Path, kind: str = "raw") -> None:
    """Entry of the load-generator process: write [wall start, latency s, status, model] per request,
    and its own CPU seconds."""
    texts = json.loads(texts_file.read_text())
    cpu = time.process_time()
    records = asyncio.run(LOAD_CLIENTS[kind](url, clients, seconds, texts))
    out.write_text(json.dumps({"records": records, "cpu_seconds": time.process_time() - cpu}))


def run_load(url: str, clients: int, seconds: float, texts_file: Path, work: Path,
             kind: str = "raw") -> subprocess.Popen[bytes]:
    """Start the load generator in its own process."""
    out = work / f"load-{clients}-{time.time():.0f}.json"
    process = subprocess.Popen([sys.executable, __file__, "--load-worker", url, str(clients), str(seconds),
                                str(texts_file), str(out), kind], env={**os.environ, "PYTHONPATH": str(ROOT)})
    process.out = out  # type: ignore[attr-defined]
    return process


def finish_load(process: subprocess.Popen[bytes]) -> tuple[list[list[Any]], float]:
    """Wait for the load generator; its records and the CPU seconds it spent."""
    if process.wait(timeout=600) != 0:
        raise SystemExit("the load generator failed")
    result = json.loads(process.out.read_text())  # type: ignore[attr-defined]
    return result["records"], float(result["cpu_seconds"])


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
                    texts_file: Path, work: Path, seconds: float, poll: float, load_client: str,
                    workers: int) -> dict[str, Any]:
    """16 clients; publish the finetuned model after a third of the time; what the clients saw."""
    server = Server(["--store", store_url, "--poll-seconds", str(poll), *server_args], work / f"server-{kind}.log",
                    workers=workers, port=_free_port() if workers > 1 else 0)
    try:
        before = server.memory_mb()
        load = run_load(server.url, 16, seconds, texts_file, work, load_client)
        time.sleep(seconds / 3)
        published = publish_folder(store_url, folder, base_dir)
        records, _ = finish_load(load)
        after = server.memory_mb()
        status = json.loads(_get(server.url + "/status"))
    finally:
        code = server.stop()
    new = [r for r in records if r[3] == folder.name and r[2] == 200]
    first_new = min((r[0] + r[1] for r in new), default=None)
    window = [r for r in records if published - 1 <= r[0] <= (first_new or published) + 1]
    return {
        "store": kind,
        "workers": workers,
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


def measure_levels(server: Server, levels: list[int], seconds: float, texts_file: Path, work: Path,
                   load_client: str, limit: float) -> list[dict[str, Any]]:
    """Each client level against a running server: throughput, latency, batch size, CPU per request."""
    rows = []
    for clients in levels:
        print(f"{clients} clients", file=sys.stderr)
        before, cpu = json.loads(_get(server.url + "/status")), server.cpu_seconds()
        records, load_cpu = finish_load(run_load(server.url, clients, seconds, texts_file, work, load_client))
        cpu = server.cpu_seconds() - cpu
        after = json.loads(_get(server.url + "/status"))
        summary = summarize(records, seconds)
        same_worker = after["pid"] == before["pid"]  # /status answers from one worker: its batches only
        after, before = after["batching"], before["batching"]
        batches = after["batches"] - before["batches"]
        rows.append({
            "clients": clients, **summary,
            "share_of_in_process_limit": round(summary["per_second"] / limit, 2),
            "mean_batch_size": round((after["messages"] - before["messages"]) / batches, 2)
            if batches and same_worker else None,
            "server_cpu_ms_per_request": round(cpu / max(1, summary["requests"]) * 1000, 3),
            "load_generator_cpu_ms_per_request": round(load_cpu / max(1, summary["requests"]) * 1000, 3),
        })
    return rows


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


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
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--max-wait-ms", type=float, default=DEFAULT_MAX_WAIT_MS)
    parser.add_argument("--workers", default="1,2",
                        help="server processes for the client levels, one run per value (1,2)")
    parser.add_argument("--swap-workers", type=int, default=1, help="server processes in the swap runs (1)")
    parser.add_argument("--load-client", choices=sorted(LOAD_CLIENTS), default="raw",
                        help="load generator: raw HTTP/1.1 (least CPU) or aiohttp's client")
    parser.add_argument("--skip-swaps", action="store_true", help="measure the client levels only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        levels = [int(c) for c in args.clients.split(",")]
        worker_counts = [int(w) for w in args.workers.split(",")]
    except ValueError:
        parser.error(f"--clients and --workers take numbers separated by commas, received {args.clients!r}, "
                     f"{args.workers!r}")
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
        "load_client": args.load_client, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
    }
    print("in-process limit", file=sys.stderr)
    results["in_process"] = measure_in_process(base / "model.tar.gz", texts, args.max_batch, args.seconds)
    limit = results["in_process"]["limit_per_second"]

    local = work / "store-local"
    shutil.copytree(stores["base"], local)
    results["runs"] = []
    for workers in worker_counts:
        print(f"{workers} worker(s)", file=sys.stderr)
        server = Server(["--store", str(local), "--poll-seconds", "0", *tuning], work / f"server-levels-{workers}.log",
                        workers=workers, port=_free_port() if workers > 1 else 0)
        run: dict[str, Any] = {"workers": workers}
        try:
            run["rss_mb_one_model"] = server.memory_mb()
            run["levels"] = measure_levels(server, levels, args.seconds, texts_file, work, args.load_client, limit)
            run["rss_mb_after_levels"] = server.memory_mb()
        finally:
            run["exit_code"] = server.stop()
        results["runs"].append(run)

    if not args.skip_swaps:
        print("hot swap, local store", file=sys.stderr)
        swap_local = work / "store-swap-local"
        shutil.copytree(stores["base"], swap_local)
        results["swaps"] = [swap_under_load("local", str(swap_local), tuning, finetuned, work, texts_file, work,
                                            args.swap_seconds, args.poll_seconds, args.load_client,
                                            args.swap_workers)]

        print("hot swap, HTTP store", file=sys.stderr)
        from tests.stores.fake_http import FakeStoreServer  # a real HTTP object store on 127.0.0.1

        http = FakeStoreServer().start()
        try:
            publish_folder(http.url("/store/"), base, work)
            results["swaps"].append(swap_under_load("http", http.url("/store/"), tuning, finetuned, work,
                                                    texts_file, work, args.swap_seconds, args.poll_seconds,
                                                    args.load_client, args.swap_workers))
        finally:
            http.stop()
    _finish(results, args.json)


def render_tables(results: dict[str, Any]) -> str:
    """The results as the Markdown tables of bench/RESULTS.md."""
    limit = results["in_process"]
    lines = [
        f"Load average: {results['uptime_before'].split('load average:')[-1].strip()} before, "
        f"{results['uptime_after'].split('load average:')[-1].strip()} after; load generator: "
        f"{results['load_client']}; --max-batch {results['max_batch']} --max-wait-ms {results['max_wait_ms']}",
        "",
        f"In-process limit: {limit['limit_per_second']} messages/s (`parse_batch` of {results['max_batch']} in "
        f"one call {limit['batch_per_second']}/s, {limit['batch_cpu_ms']} ms CPU each; in length-sorted chunks "
        f"of {limit['chunk']} {limit['chunked_per_second']}/s, {limit['chunked_cpu_ms']} ms; one by one "
        f"{limit['single_per_second']}/s, {limit['single_cpu_ms']} ms); from its CPU time one free core would "
        f"parse {limit['one_core_per_second']} messages/s; model load {limit['load_seconds']} s.",
        "",
        "| workers | clients | requests/s | share of limit | p50 ms | p99 ms | max ms | mean batch | failed "
        "| server CPU ms/request | load generator CPU ms/request |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        for row in run["levels"]:
            lines.append(
                f"| {run['workers']} | {row['clients']} | {row['per_second']} | {row['share_of_in_process_limit']} "
                f"| {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} | {row['mean_batch_size'] or '-'} "
                f"| {row['failures']} | {row['server_cpu_ms_per_request']} "
                f"| {row['load_generator_cpu_ms_per_request']} |")
    for run in results["runs"]:
        lines.append(f"\nRSS with one model, {run['workers']} worker(s): {run['rss_mb_one_model'].get('VmRSS')} MB "
                     f"per serving process ({run['rss_mb_after_levels'].get('VmRSS')} MB after the levels).")
    if results.get("swaps"):
        lines += [
            "",
            "| store | workers | requests | failed | requests/s | p99 ms | max ms around the swap "
            "| manifest written -> first answer of the new model | fetch + load s | RSS before -> after (peak) MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for swap in results["swaps"]:
            lines.append(
                f"| {swap['store']} | {swap['workers']} | {swap['requests']} | {swap['failures']} "
                f"| {swap['per_second']} | {swap['p99_ms']} | {swap['max_ms_around_swap']} "
                f"| {_seconds(swap['publish_to_first_new_answer_s'])} | {swap['fetch_seconds']} + {swap['load_seconds']} "
                f"| {swap['rss_mb_before']} -> {swap['rss_mb_after']} ({swap['peak_rss_mb']}) |")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "no answer from the new model during the run" if value is None else f"{value} s"


def _finish(results: dict[str, Any], out: Path | None) -> None:
    results["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")
    else:
        print(json.dumps(results, indent=2))
    print(render_tables(results))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load-worker":
        load_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5]), Path(sys.argv[6]),
                    sys.argv[7])
    else:
        main()
