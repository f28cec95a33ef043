"""Every endpoint of the HTTP API against a real server on 127.0.0.1, with the requests client."""

from __future__ import annotations

import dataclasses
import json
import logging
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from pipeline import __version__
from pipeline.serve.loaded import LoadedModel, load_model_archive
from pipeline.serve.settings import ServeSettings
from pipeline.serve.sources import ArchiveSource
from tests.serve.conftest import RunningServer, start_server

pytestmark = pytest.mark.slow

# Rasa 3.x's parse result and entity fields (rasa/shared/nlu/constants.py; docs "HTTP API" /model/parse).
RASA_PARSE_FIELDS = {"text", "intent", "entities", "intent_ranking"}
RASA_ENTITY_FIELDS = {"entity", "start", "end", "value", "confidence_entity", "extractor", "role", "group"}
RASA_ERROR_FIELDS = {"version", "status", "message", "reason", "details", "help", "code"}
RASA_TRACKER_FIELDS = {"sender_id", "slots", "latest_message", "latest_event_time", "followup_action", "paused",
                       "events", "latest_input_channel", "active_loop", "latest_action", "latest_action_name"}
ENTITY_TEXTS = ["what's the weather in Paris", "how is the weather in Berlin tomorrow", "will it rain in London",
                "weather forecast for Rome", "is it cold in Stockholm"]
GREET = {"intent": {"name": "greet", "confidence": 1.0}, "entities": []}


@pytest.fixture(scope="module")
def server(published: Path) -> Iterator[RunningServer]:
    archive = next((published / ".deltatrain" / "store" / "models").glob("*/model.tar.gz"))
    running = start_server(ArchiveSource(archive), ServeSettings(poll_seconds=0, max_text_chars=200,
                                                                 max_body_bytes=4096))
    yield running
    running.stop()


def _error(response: requests.Response, status: int, reason: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == RASA_ERROR_FIELDS
    assert body["status"] == "failure" and body["code"] == status and body["reason"] == reason
    assert "Traceback" not in response.text
    return body


def test_root_and_version(server: RunningServer) -> None:
    root = requests.get(server.url + "/")
    assert root.status_code == 200 and root.text == f"Hello from deltatrain: {__version__}"
    version = requests.get(server.url + "/version").json()
    assert version["version"] == __version__ and "minimum_compatible_version" in version


def test_parse_equals_the_model_parsing_in_process_with_rasa_fields(server: RunningServer) -> None:
    model = server.reloader.current
    assert model is not None and model.nlu is not None
    entities = []
    for text in ["hello there", *ENTITY_TEXTS]:
        response = requests.post(server.url + "/model/parse", json={"text": text, "message_id": "m-1"})
        assert response.status_code == 200
        body = response.json()
        assert RASA_PARSE_FIELDS <= set(body) and body["message_id"] == "m-1"
        assert set(body["intent"]) == {"name", "confidence"}
        assert {k: v for k, v in body.items() if k != "message_id"} == json.loads(json.dumps(model.nlu.parse(text)))
        entities += body["entities"]
    assert entities, "the tiny model found no entity in any weather question"
    for entity in entities:
        assert RASA_ENTITY_FIELDS <= set(entity)


def test_status_reports_the_model_and_how_it_was_trained(server: RunningServer, published: Path) -> None:
    body = requests.get(server.url + "/status").json()
    archive = next((published / ".deltatrain" / "store" / "models").glob("*/model.tar.gz"))
    with tarfile.open(archive) as tar:
        metadata = json.load(tar.extractfile("metadata.json"))  # type: ignore[arg-type]
        fingerprint = json.load(tar.extractfile("fingerprint.json"))  # type: ignore[arg-type]
    assert body["model_file"] == metadata["name"] == body["model"]["name"]
    assert body["model_id"] and body["num_active_training_jobs"] == 0
    model = body["model"]
    assert model["trained_at"] == metadata["trained_at"] and model["mode"] == "full"
    assert model["parts"] == {"nlu": "full", "core": "full"}
    assert model["fingerprint"] == fingerprint["sections"]
    assert model["loaded_at"] and model["nlu"] and model["core"]
    assert body["reload"]["last_reload_error"] is None and body["reload"]["swaps"] == 1


def test_conversation_messages_tracker_predict(server: RunningServer) -> None:
    url = server.url + "/conversations/alice"
    first = requests.post(url + "/messages", json={"text": "hi", "sender": "user", "parse_data": GREET})
    assert first.status_code == 200
    tracker = first.json()
    assert set(tracker) == RASA_TRACKER_FIELDS and tracker["sender_id"] == "alice"
    assert [e["event"] for e in tracker["events"]] == ["user"]
    assert tracker["latest_message"]["intent"]["name"] == "greet"

    predicted = requests.post(url + "/predict").json()
    assert predicted["action"] == "utter_greet" and predicted["confidence"] == 1.0
    assert predicted["policy"] in ("MemoizationPolicy", "RulePolicy")
    assert predicted["scores"][0] == {"action": "utter_greet", "score": 1.0}
    assert set(predicted["tracker"]) == RASA_TRACKER_FIELDS

    appended = requests.post(url + "/tracker/events", json=[{"event": "action", "name": "utter_greet"}])
    assert [e["event"] for e in appended.json()["events"]] == ["user", "action"]
    assert requests.post(url + "/predict").json()["action"] == "action_listen"

    parsed = requests.post(url + "/messages", json={"text": "goodbye"}).json()  # parsed by the model
    assert parsed["events"][-1]["parse_data"]["text"] == "goodbye"
    tracker = requests.get(url + "/tracker").json()
    assert len(tracker["events"]) == 3 and tracker["latest_action_name"] == "utter_greet"
    assert requests.get(url + "/tracker", params={"include_events": "NONE"}).json()["events"] is None


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "reason"),
    [
        ("post", "/model/parse", {"data": b"hello"}, 400, "BadRequest"),
        ("post", "/model/parse", {"data": b"\xff\xfe{}"}, 400, "BadRequest"),
        ("post", "/model/parse", {"data": b""}, 400, "BadRequest"),
        ("post", "/model/parse", {"json": ["hello"]}, 400, "BadRequest"),
        ("post", "/model/parse", {"json": {"message_id": "x"}}, 400, "BadRequest"),
        ("post", "/model/parse", {"json": {"text": 42}}, 400, "BadRequest"),
        ("post", "/model/parse", {"json": {"text": None}}, 400, "BadRequest"),
        ("post", "/model/parse", {"json": {"text": "   "}}, 400, "BadRequest"),
        ("post", "/model/parse", {"json": {"text": "x" * 201}}, 400, "BadRequest"),
        ("post", "/model/parse", {"json": {"text": "hi", "message_id": [1]}}, 400, "BadRequest"),
        ("post", "/model/parse", {"data": b'{"text": "' + b"x" * 5000 + b'"}'}, 413, "RequestTooLarge"),
        ("get", "/conversations/nobody/tracker", {}, 404, "NotFound"),
        ("post", "/conversations/nobody/predict", {}, 404, "NotFound"),
        ("post", "/conversations/c/messages", {"json": {"text": "hi", "sender": "bot"}}, 400, "BadRequest"),
        ("post", "/conversations/c/tracker/events", {"json": [{"event": "restart"}]}, 400, "BadRequest"),
        ("post", "/conversations/c/tracker/events", {"json": [{"event": "action"}]}, 400, "BadRequest"),
        ("post", "/conversations/c/tracker/events", {"json": []}, 400, "BadRequest"),
        ("get", "/conversations/alice/tracker", {"params": {"include_events": "SOME"}}, 400, "BadRequest"),
        ("get", "/no/such/path", {}, 404, "NotFound"),
        ("get", "/model/parse", {}, 405, "MethodNotAllowed"),
        ("delete", "/status", {}, 405, "MethodNotAllowed"),
    ],
    ids=["not-json", "not-utf8", "empty-body", "json-list", "no-text", "text-int", "text-null", "text-blank",
         "text-too-long", "message-id-list", "body-too-large", "unknown-conversation-tracker",
         "unknown-conversation-predict", "sender-not-user", "unknown-event", "action-without-name", "no-events",
         "bad-include-events", "unknown-path", "wrong-method", "wrong-method-status"],
)
def test_bad_input_gets_a_clear_json_error_and_the_server_keeps_serving(
    server: RunningServer, method: str, path: str, kwargs: dict, status: int, reason: str
) -> None:
    body = _error(getattr(requests, method)(server.url + path, **kwargs), status, reason)
    assert len(body["message"]) > 10
    assert requests.post(server.url + "/model/parse", json={"text": "hello"}).status_code == 200


def test_wrong_method_names_the_allowed_one(server: RunningServer) -> None:
    response = requests.get(server.url + "/model/parse")
    assert response.headers["Allow"] == "POST" and "use POST" in response.json()["message"]


def test_access_log_is_json_without_tokens(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    def access_lines() -> list[dict]:
        return [json.loads(r.getMessage()) for r in caplog.records if r.name == "deltatrain.serve.access"]

    with caplog.at_level(logging.INFO, logger="deltatrain.serve.access"):
        requests.post(server.url + "/model/parse", params={"token": "very-secret"}, json={"text": "hi"})
        deadline = time.monotonic() + 10
        while not access_lines() and time.monotonic() < deadline:  # logged just after the answer is sent
            time.sleep(0.01)
    lines = access_lines()
    assert {"method": "POST", "path": "/model/parse", "status": 200}.items() <= lines[-1].items()
    assert "very-secret" not in caplog.text


def test_request_timeout_answers_503_json(archive: Path, server_factory: list[RunningServer]) -> None:
    server = start_server(ArchiveSource(archive), ServeSettings(poll_seconds=0, request_timeout=1e-6))
    server_factory.append(server)
    _error(requests.post(server.url + "/model/parse", json={"text": "hello"}), 503, "Timeout")


def test_model_without_dialogue_part_answers_409_on_predict(
    archive: Path, tmp_path: Path, server_factory: list[RunningServer]
) -> None:
    nlu_only = tmp_path / "nlu-only.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(nlu_only, "w:gz") as target:
        for member in source.getmembers():
            if not member.name.startswith("core"):
                target.addfile(member, source.extractfile(member) if member.isfile() else None)
    assert load_model_archive(nlu_only, source="test").core is None
    server = start_server(ArchiveSource(nlu_only))
    server_factory.append(server)
    requests.post(server.url + "/conversations/bob/messages", json={"text": "hi"})
    _error(requests.post(server.url + "/conversations/bob/predict"), 409, "Conflict")


class _SlowNlu:
    """An NLU model whose batches take ``delay`` seconds (a request still in flight at shutdown)."""

    def __init__(self, nlu: Any, delay: float) -> None:
        self.nlu, self.delay = nlu, delay

    def parse_batch(self, texts: list[str]) -> list[dict[str, Any]]:
        time.sleep(self.delay)
        return self.nlu.parse_batch(texts)  # type: ignore[no-any-return]


def test_shutdown_lets_requests_in_flight_finish(archive: Path) -> None:
    def slow_loader(path: Path, **kwargs: Any) -> LoadedModel:
        model = load_model_archive(path, **kwargs)
        return dataclasses.replace(model, nlu=_SlowNlu(model.nlu, 1.0))  # type: ignore[arg-type]

    server = start_server(ArchiveSource(archive), loader=slow_loader)
    answers: list[requests.Response] = []
    client = threading.Thread(target=lambda: answers.append(
        requests.post(server.url + "/model/parse", json={"text": "hello"}, timeout=30)))
    client.start()
    time.sleep(0.3)  # the request is now waiting for its batch
    server.stop()  # SIGTERM's path: stop accepting, finish what is in flight, then stop
    client.join(timeout=30)
    assert answers and answers[0].status_code == 200 and answers[0].json()["text"] == "hello"
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/", timeout=5)
