"""`deltatrain serve` as a process: no TensorFlow, listens, answers, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.serve.conftest import commit_change, run_ci, store_dir

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


class _Log:
    """The server's stderr, read by a thread, so waiting for a line can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        stream = process.stderr

        def copy() -> None:
            for line in stream:
                self.lines.put(line)

        threading.Thread(target=copy, daemon=True).start()

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 90) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern``; AssertionError with the log after ``timeout``."""
        found: list[re.Match[str]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {count} x {pattern!r} in the log:\n{''.join(self.seen)}") from None
            self.seen.append(line)
            found += re.finditer(pattern, line)
        return found

    def rest(self, timeout: float = 10) -> str:
        """Everything logged so far (and until the stream ends or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.seen.append(self.lines.get(timeout=0.2))
            except queue.Empty:
                break
        return "".join(self.seen)


def test_serving_never_imports_tensorflow(archive: Path) -> None:
    code = (
        "import sys, asyncio\n"
        "from pipeline.serve.app import build_app, parse_with\n"
        "from pipeline.serve.server import load_first\n"
        "from pipeline.serve.settings import ServeSettings\n"
        "from pipeline.serve.sources import ArchiveSource\n"
        f"reloader = load_first(ArchiveSource({str(archive)!r}), require_model=True)\n"
        "build_app(ServeSettings(), reloader)\n"
        "print(parse_with(reloader.current, ['hello'])[0]['intent']['name'])\n"
        "print(reloader.current.core.predict_next_action.__name__)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_cli_serves_then_stops_on_sigterm(archive: Path, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--model", str(archive), "--port", "0", "--poll-seconds", "0.5"],
        env={**_env(), "DELTATRAIN_SERVER_TOKEN": "cli-token"}, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        log = _Log(process)
        url = log.wait_for(r"listening on (http://127\.0\.0\.1:\d+)")[0].group(1)
        assert requests.post(url + "/model/parse", json={"text": "hi"}).status_code == 401
        parsed = requests.post(url + "/model/parse", params={"token": "cli-token"}, json={"text": "hi"})
        assert parsed.status_code == 200 and parsed.json()["text"] == "hi"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        text = log.rest()
        assert "shutting down" in text and "stopped" in text
        assert "cli-token" not in text  # the access log never shows the token
        assert '"path": "/model/parse"' in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_refuses_bad_options_before_loading(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline", "serve", "--model", str(tmp_path / "missing"),
                             "--workers", "0"], env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--workers must be at least 1" in result.stderr
    result = subprocess.run([sys.executable, "-m", "pipeline", "serve", "--model", str(tmp_path / "missing"),
                             "--port", "0"], env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "model path not found" in result.stderr and "Traceback" not in result.stderr


def test_workers_share_the_port_and_stop_together(archive: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--model", str(archive), "--port", str(port), "--workers", "2",
         "--poll-seconds", "0"], env=_env(), stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        _Log(process).wait_for("listening on", count=2)
        pids = {requests.get(f"http://127.0.0.1:{port}/status").json()["pid"] for _ in range(40)}
        assert len(pids) == 2 and process.pid not in pids
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_each_worker_follows_the_store_and_swaps_in_the_new_model(assistant: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = store_dir(assistant)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--store", str(store), "--port", str(port), "--workers", "2",
         "--poll-seconds", "0.3"], env=_env(), stderr=subprocess.PIPE, text=True, cwd=assistant,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _Log(process).wait_for("listening on", count=2)
        first = requests.get(url + "/status").json()["model_file"]
        commit_change(assistant, "Goodbye, have a good trip!", "Bye, safe travels!")
        run_ci(assistant)  # responses only: the CI step repackages and publishes a new model
        latest = json.loads((store / "manifest.json").read_text())["latest"]
        assert latest != first
        served: dict[int, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(served) < 2 or set(served.values()) != {latest}):
            status = requests.get(url + "/status").json()
            served[status["pid"]] = status["model_file"]
            parsed = requests.post(url + "/model/parse", json={"text": "bye"})
            assert parsed.status_code == 200
        assert len(served) == 2 and set(served.values()) == {latest}, served  # both workers swapped
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
