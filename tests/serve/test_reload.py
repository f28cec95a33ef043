"""Hot reload end to end: the CI step publishes, the server swaps; broken models are refused."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from pipeline.serve.settings import ServeSettings
from pipeline.serve.sources import StoreSource, open_source
from pipeline.serve.watch import HttpWatcher, LocalWatcher
from pipeline.stores import ModelStore, open_store
from tests.serve.conftest import RunningServer, commit_change, run_ci, start_server, store_dir
from tests.stores.fake_http import FakeStoreServer

pytestmark = pytest.mark.slow


def _status(server: RunningServer) -> dict[str, Any]:
    response = requests.get(server.url + "/status")
    assert response.status_code == 200, response.text
    return response.json()


def _renamed(archive: Path, name: str, directory: Path) -> Path:
    """A copy of a model archive whose metadata names it ``name`` (so its bytes differ)."""
    target = directory / f"{name}.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(target, "w:gz") as out:
        for member in source.getmembers():
            handle = source.extractfile(member) if member.isfile() else None
            if member.name == "metadata.json" and handle is not None:
                data = json.dumps({**json.load(handle), "name": name}).encode()
                member.size, handle = len(data), io.BytesIO(data)
            out.addfile(member, handle)
    return target


def _origin(assistant: Path) -> Path:
    """The store folder of the model the CI step published first."""
    return store_dir(assistant) / "models" / json.loads((store_dir(assistant) / "manifest.json").read_text())["latest"]


def _republish(target: ModelStore, folder: Path, name: str, *, archive: Path | None = None) -> None:
    """Publish the model stored in ``folder`` again as ``name`` (or ``archive`` with its side files)."""
    metadata = {**json.loads((folder / "metadata.json").read_text()), "name": name}
    with tempfile.TemporaryDirectory() as tmp:
        target.publish(archive or _renamed(folder / "model.tar.gz", name, Path(tmp)), name=name,
                   fingerprint=json.loads((folder / "fingerprint.json").read_text()),
                       metadata=metadata, metrics=json.loads((folder / "metrics.json").read_text()))


class _Hammer:
    """Clients sending parse requests in a loop; every status code is kept."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.codes: list[int] = []
        self.models: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> "_Hammer":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.post(self.url + "/model/parse", json={"text": "book a flight to Paris"},
                                            timeout=30)
                except requests.RequestException:
                    self.codes.append(-1)
                    continue
                self.codes.append(response.status_code)
                self.models.append(response.headers.get("X-Deltatrain-Model", ""))


def _wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_ci_publish_is_served_without_a_failed_request(assistant: Path, server_factory: list[RunningServer]) -> None:
    source = open_source(model=None, store=str(store_dir(assistant)), base_dir=assistant)
    assert isinstance(source, StoreSource) and isinstance(source.watcher, LocalWatcher)
    server = start_server(source, ServeSettings(poll_seconds=0.2))
    server_factory.append(server)
    first = _status(server)
    assert first["model"]["mode"] == "full" and first["model"]["metrics"]["intent_f1"] is not None

    with _Hammer(server.url) as hammer:
        commit_change(assistant, "Goodbye, have a good trip!", "Bye, safe travels!")
        run_ci(assistant)  # responses only: the CI step repackages and publishes a new model
        latest = json.loads((store_dir(assistant) / "manifest.json").read_text())["latest"]
        assert latest != first["model_file"]
        _wait_for(lambda: _status(server)["model_file"] == latest)
        _wait_for(lambda: latest in hammer.models)  # requests keep coming after the swap
    assert hammer.codes and set(hammer.codes) == {200}, f"failed requests during the swap: {hammer.codes}"
    assert hammer.models[0] == first["model_file"] and latest in hammer.models

    status = _status(server)
    stored_metrics = json.loads((store_dir(assistant) / "models" / latest / "metrics.json").read_text())
    stored_metrics.pop("predictions", None)  # per-utterance rows stay in the store, not in /status
    assert status["model"]["mode"] == "repackage" and status["model"]["metrics"] == stored_metrics
    assert status["reload"]["swaps"] == 2 and status["reload"]["last_reload_error"] is None
    assert status["model"]["loaded_at"] >= first["model"]["loaded_at"]


def test_broken_models_are_refused_and_the_old_one_keeps_answering(
    assistant: Path, tmp_path: Path, server_factory: list[RunningServer]
) -> None:
    store = open_store(str(store_dir(assistant)), base_dir=assistant)
    origin = _origin(assistant)
    server = start_server(open_source(model=None, store=str(store_dir(assistant)), base_dir=assistant))
    server_factory.append(server)
    old = _status(server)["model_file"]

    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"this is not a model archive")
    _republish(store, origin, "unreadable", archive=garbage)  # sha256 matches, archive is junk
    assert server.reloader.check_once() is False
    error = _status(server)["reload"]["last_reload_error"]
    assert error["model"] == "unreadable" and "tar.gz" in error["error"] and error["will_retry"] is False
    assert server.reloader.check_once() is False  # refused: not downloaded again

    _republish(store, origin, "tampered")
    (store_dir(assistant) / "models" / "tampered" / "model.tar.gz").write_bytes(b"replaced after upload")
    assert server.reloader.check_once() is False
    status = _status(server)
    assert status["model_file"] == old
    assert status["reload"]["last_reload_error"]["model"] == "tampered"
    assert "sha256" in status["reload"]["last_reload_error"]["error"]
    parsed = requests.post(server.url + "/model/parse", json={"text": "hello"})
    assert parsed.status_code == 200 and parsed.json()["intent"]["name"]

    _republish(store, origin, "good-again")
    assert server.reloader.check_once() is True
    status = _status(server)
    assert status["model_file"] == "good-again" and status["reload"]["last_reload_error"] is None


@pytest.fixture
def http_store() -> Iterator[FakeStoreServer]:
    server = FakeStoreServer().start()
    yield server
    server.stop()


def test_http_store_network_errors_are_retried(
    assistant: Path, tmp_path: Path, http_store: FakeStoreServer, server_factory: list[RunningServer]
) -> None:
    url = http_store.url("/store/")
    store = open_store(url, base_dir=tmp_path)
    origin = _origin(assistant)
    _republish(store, origin, "first")
    source = open_source(model=url, store=None, base_dir=tmp_path)
    assert isinstance(source, StoreSource) and isinstance(source.watcher, HttpWatcher)
    server = start_server(source)
    server_factory.append(server)
    assert _status(server)["model_file"] == "first"

    _republish(store, origin, "second")
    # a 503 on every try of one poll (the HTTP backend tries 4 times), then the store recovers
    http_store.add_fault("GET", r"second/model\.tar\.gz$", status=503, times=4)
    assert server.reloader.check_once() is False
    error = _status(server)["reload"]["last_reload_error"]
    assert error["model"] == "second" and error["will_retry"] is True
    assert server.reloader.check_once() is True
    assert _status(server)["model_file"] == "second"


def test_empty_store_answers_409_until_a_model_is_published(
    assistant: Path, tmp_path: Path, server_factory: list[RunningServer]
) -> None:
    empty = tmp_path / "empty-store"
    origin = _origin(assistant)
    server = start_server(open_source(model=None, store=str(empty), base_dir=tmp_path))
    server_factory.append(server)
    waiting = requests.post(server.url + "/model/parse", json={"text": "hello"})
    assert waiting.status_code == 409 and waiting.json()["reason"] == "Conflict"
    status = requests.get(server.url + "/status")
    assert status.status_code == 409 and "no models yet" in status.json()["details"]["last_reload_error"]["error"]

    _republish(open_store(str(empty), base_dir=tmp_path), origin, "first")
    assert server.reloader.check_once() is True
    assert requests.post(server.url + "/model/parse", json={"text": "hello"}).status_code == 200


class _EtagHandler(BaseHTTPRequestHandler):
    body = b'{"format": 1, "latest": null, "models": []}\n'
    etag = '"v1"'
    answers: list[int] = []

    def do_GET(self) -> None:
        if self.headers.get("If-None-Match") == self.etag:
            self.answers.append(304)
            self.send_response(304)
            self.end_headers()
            return
        self.answers.append(200)
        self.send_response(200)
        self.send_header("ETag", self.etag)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_watcher_sends_if_none_match_and_reads_only_changes() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EtagHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        watcher = HttpWatcher(f"http://127.0.0.1:{httpd.server_address[1]}/manifest.json", token=None)
        first = watcher.read(None)
        assert first.changed and first.data == _EtagHandler.body and first.token == 'etag:"v1"'
        second = watcher.read(first.token)
        assert not second.changed and second.data is None
        _EtagHandler.etag, _EtagHandler.body = '"v2"', b'{"format": 1, "latest": null, "models": [] }\n'
        third = watcher.read(second.token)
        assert third.changed and third.token == 'etag:"v2"'
        assert _EtagHandler.answers == [200, 304, 200]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def s3_store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A bucket on a moto S3 server on 127.0.0.1 (dummy credentials); (store URL, endpoint)."""
    import boto3  # type: ignore[import-untyped]
    from moto.server import ThreadedMotoServer

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.session.Session().client("s3", endpoint_url=endpoint).create_bucket(Bucket="models")
    yield "s3://models/assistant", endpoint
    server.stop()


def test_s3_store_is_followed(
    assistant: Path, tmp_path: Path, s3_store_url: tuple[str, str], server_factory: list[RunningServer]
) -> None:
    url, endpoint = s3_store_url
    store = open_store(url, base_dir=tmp_path, s3_endpoint_url=endpoint)
    origin = _origin(assistant)
    _republish(store, origin, "first")
    server = start_server(open_source(model=None, store=url, base_dir=tmp_path, s3_endpoint_url=endpoint))
    server_factory.append(server)
    assert _status(server)["model_file"] == "first"
    assert server.reloader.check_once() is False  # unchanged manifest: nothing downloaded
    _republish(store, origin, "second")
    assert server.reloader.check_once() is True
    status = _status(server)
    assert status["model_file"] == "second" and status["reload"]["source"] == "s3://models/assistant/"
