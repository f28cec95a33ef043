"""DucklingEntityExtractor against a real local fake of Duckling's ``/parse`` endpoint.

The fake is a stdlib ThreadingHTTPServer on 127.0.0.1 that records the form it
received and answers with Duckling's JSON (or an error status).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs

import pytest

from pipeline import duckling
from pipeline.data.loader import DirectorySource, ProjectPaths, load_project
from pipeline.duckling import DucklingSettings, build_entities, fetch_entities
from tests.helpers import write_project

#: What Duckling answers for "two people at 7pm" with dims number and time.
MATCHES = [
    {
        "body": "two",
        "start": 0,
        "end": 3,
        "dim": "number",
        "latent": False,
        "value": {"value": 2, "type": "value"},
    },
    {
        "body": "at 7pm",
        "start": 11,
        "end": 17,
        "dim": "time",
        "latent": False,
        "value": {
            "type": "interval",
            "to": {"value": "2026-12-02T20:00:00.000+01:00", "grain": "hour"},
            "from": {"value": "2026-12-02T19:00:00.000+01:00", "grain": "hour"},
        },
    },
    {
        "body": "two",
        "start": 0,
        "end": 3,
        "dim": "amount-of-money",
        "latent": True,
        "value": {"value": 2, "type": "value", "unit": None},
    },
]


class FakeDuckling:
    """A Duckling ``/parse`` endpoint: records each form, answers ``status`` with ``MATCHES``."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.status = 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode("utf-8"), keep_blank_values=True)
                fake.forms.append({k: v[0] for k, v in form.items()})
                fake.paths.append(self.path)
                body = json.dumps(MATCHES).encode() if fake.status == 200 else b"boom"
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def server() -> Iterator[FakeDuckling]:
    duckling.reset()
    fake = FakeDuckling()
    yield fake
    fake.close()
    duckling.reset()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_posts_rasa_form_fields_and_maps_matches_to_rasa_entities(server: FakeDuckling) -> None:
    settings = DucklingSettings(url=server.url, dimensions=("number", "time"), locale="en_US", timezone="Europe/Berlin")
    entities = fetch_entities("two people at 7pm", settings, reference_time_ms=1_700_000_000_000, environ={})
    assert server.paths == ["/parse"]
    assert server.forms == [
        {
            "text": "two people at 7pm",
            "locale": "en_US",
            "tz": "Europe/Berlin",
            "dims": '["number", "time"]',
            "reftime": "1700000000000",
        }
    ]
    assert entities == [
        {
            "start": 0,
            "end": 3,
            "text": "two",
            "value": 2,
            "confidence": 1.0,
            "additional_info": MATCHES[0]["value"],
            "entity": "number",
            "extractor": "DucklingEntityExtractor",
        },
        {
            "start": 11,
            "end": 17,
            "text": "at 7pm",
            "value": {"to": "2026-12-02T20:00:00.000+01:00", "from": "2026-12-02T19:00:00.000+01:00"},
            "confidence": 1.0,
            "additional_info": MATCHES[1]["value"],
            "entity": "time",
            "extractor": "DucklingEntityExtractor",
        },
    ]


def test_without_dimensions_every_match_is_kept_and_the_url_may_end_with_a_slash(server: FakeDuckling) -> None:
    entities = fetch_entities("two people at 7pm", DucklingSettings(url=server.url + "/"), environ={})
    assert [e["entity"] for e in entities] == ["number", "time", "amount-of-money"]
    assert server.paths == ["/parse"] and server.forms[0]["dims"] == "null"
    assert "tz" not in server.forms[0] and "locale" not in server.forms[0]  # None fields are not sent, as in Rasa


def test_the_environment_variable_overrides_the_url_as_in_rasa(server: FakeDuckling) -> None:
    settings = DucklingSettings(url=f"http://127.0.0.1:{free_port()}")
    entities = fetch_entities("two", settings, environ={"RASA_DUCKLING_HTTP_URL": server.url})
    assert len(entities) == 3 and len(server.forms) == 1


def test_unreachable_server_is_a_warning_and_no_entities(caplog: pytest.LogCaptureFixture) -> None:
    duckling.reset()
    url = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="pipeline.duckling"):
        assert fetch_entities("two people", DucklingSettings(url=url, timeout=0.5), environ={}) == []
        assert fetch_entities("three people", DucklingSettings(url=url, timeout=0.5), environ={}) == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one warning per outage, not one per message
    assert url + "/parse" in warnings[0].getMessage() and "DucklingEntityExtractor" in warnings[0].getMessage()
    duckling.reset()


def test_an_error_status_is_a_warning_and_the_server_is_not_asked_again_at_once(
    server: FakeDuckling, caplog: pytest.LogCaptureFixture
) -> None:
    server.status = 500
    settings = DucklingSettings(url=server.url)
    with caplog.at_level(logging.WARNING, logger="pipeline.duckling"):
        assert fetch_entities("two", settings, environ={}) == []
        assert fetch_entities("two", settings, environ={}) == []
    assert len(server.forms) == 1
    assert "HTTP 500" in caplog.records[0].getMessage()
    duckling.reset()  # after the retry delay the server is asked again
    server.status = 200
    assert len(fetch_entities("two", settings, environ={})) == 3


def test_no_url_is_a_warning_and_no_entities(caplog: pytest.LogCaptureFixture) -> None:
    duckling.reset()
    with caplog.at_level(logging.WARNING, logger="pipeline.duckling"):
        assert fetch_entities("two", DucklingSettings(), environ={}) == []
    assert "no 'url'" in caplog.records[0].getMessage()
    duckling.reset()


def test_malformed_matches_are_skipped() -> None:
    assert build_entities({"error": "x"}, None) == []
    assert build_entities([{"start": 0}, "x", MATCHES[0]], ["number"])[0]["value"] == 2


# --------------------------------------------------------------- config and model

CONFIG = """
    language: en
    pipeline:
      - name: WhitespaceTokenizer
      - name: CountVectorsFeaturizer
      - name: DucklingHTTPExtractor
        url: {url}
        dimensions:
          - number
        timezone: Europe/Berlin
        timeout: 1
      - name: DIETClassifier
        epochs: 3
        transformer_size: 8
        number_of_transformer_layers: 1
        number_of_attention_heads: 2
        embedding_dimension: 4
    policies:
      - name: RulePolicy
"""
NLU = """
    version: "3.1"
    nlu:
    - intent: book
      examples: |
        - a table for two
        - book a table for four people
    - intent: greet
      examples: |
        - hello
        - hi there
"""


def test_the_model_keeps_duckling_settings_and_parse_asks_the_server(server: FakeDuckling, tmp_path: Path) -> None:
    from pipeline.training.nlu import NluModel, train_nlu

    root = write_project(tmp_path, {"config.yml": CONFIG.format(url=server.url), "data/nlu.yml": NLU})
    project, warnings = load_project(DirectorySource(root), ProjectPaths(domain=""))
    [rename] = [w for w in warnings if "DucklingHTTPExtractor" in w.message]
    assert rename.location is not None and rename.location.line == 5
    model = train_nlu(project.nlu, project.config, seed=1)
    model.save(tmp_path / "nlu")
    saved = json.loads((tmp_path / "nlu" / "config.json").read_text())["settings"]["duckling"]
    assert saved == [
        {"url": server.url, "dimensions": ["number"], "locale": "en_EN", "timezone": "Europe/Berlin", "timeout": 1.0}
    ]
    loaded = NluModel.load(tmp_path / "nlu")
    result = loaded.parse("a table for two at 7pm")
    assert [e for e in result["entities"] if e["extractor"] == "DucklingEntityExtractor"] == [
        {
            "start": 0,
            "end": 3,
            "text": "two",
            "value": 2,
            "confidence": 1.0,
            "additional_info": MATCHES[0]["value"],
            "entity": "number",
            "extractor": "DucklingEntityExtractor",
        }
    ]
    assert server.forms[-1]["locale"] == "en_EN" and server.forms[-1]["dims"] == '["number"]'
    asked = len(server.forms)
    loaded.parse_batch(["a table for two"])  # evaluation leaves Duckling out, as Rasa's does
    assert len(server.forms) == asked
    server.close()
    duckling.reset()
    offline = loaded.parse("a table for two")  # server gone: no Duckling entities, no crash
    assert offline["intent"]["name"] in ("book", "greet")
    assert not [e for e in offline["entities"] if e["extractor"] == "DucklingEntityExtractor"]
