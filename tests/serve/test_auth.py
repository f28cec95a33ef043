"""Rasa's authentication: token as query parameter or Bearer header, JWT roles; 401 vs 403."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from pipeline.serve.auth import AuthOutcome, check_request, decode_jwt, encode_jwt
from pipeline.serve.settings import ServeSettings
from pipeline.serve.sources import ArchiveSource
from tests.serve.conftest import RunningServer, start_server

TOKEN = "t0ken-for-tests"
SECRET = "jwt-secret-for-tests"
NOW = 1_700_000_000.0


def _jwt(role: str, username: str = "alice", **claims: object) -> str:
    return encode_jwt({"user": {"username": username, "role": role}, **claims}, SECRET)


@pytest.mark.parametrize(
    ("query", "authorization", "conversation", "expected"),
    [
        ({}, None, None, AuthOutcome.NOT_AUTHENTICATED),
        ({"token": TOKEN}, None, None, AuthOutcome.ALLOWED),
        ({"token": "wrong"}, None, None, AuthOutcome.NOT_AUTHENTICATED),
        ({}, f"Bearer {TOKEN}", None, AuthOutcome.ALLOWED),
        ({}, f"bearer {TOKEN}", None, AuthOutcome.ALLOWED),
        ({}, f"Basic {TOKEN}", None, AuthOutcome.NOT_AUTHENTICATED),
        ({}, "Bearer wrong", None, AuthOutcome.NOT_AUTHENTICATED),
        ({}, f"Bearer {_jwt('admin')}", "bob", AuthOutcome.ALLOWED),
        ({}, f"Bearer {_jwt('user')}", "alice", AuthOutcome.ALLOWED),
        ({}, f"Bearer {_jwt('user')}", "bob", AuthOutcome.NOT_AUTHORIZED),
        ({}, f"Bearer {_jwt('user')}", None, AuthOutcome.NOT_AUTHORIZED),
        ({}, f"Bearer {_jwt('guest')}", "alice", AuthOutcome.NOT_AUTHORIZED),
        ({}, f"Bearer {_jwt('admin', exp=NOW - 1)}", None, AuthOutcome.NOT_AUTHENTICATED),
        ({}, f"Bearer {_jwt('admin', exp=NOW + 60)}", None, AuthOutcome.ALLOWED),
        ({}, f"Bearer {_jwt('admin')[:-2]}xx", None, AuthOutcome.NOT_AUTHENTICATED),
        ({}, f"Bearer {encode_jwt({'user': {'role': 'admin'}}, 'other-secret')}", None, AuthOutcome.NOT_AUTHENTICATED),
    ],
    ids=["nothing", "query-token", "wrong-query-token", "bearer-token", "bearer-lowercase", "basic-scheme",
         "wrong-bearer", "jwt-admin", "jwt-user-own-conversation", "jwt-user-other-conversation",
         "jwt-user-no-conversation", "jwt-unknown-role", "jwt-expired", "jwt-not-expired", "jwt-bad-signature",
         "jwt-other-secret"],
)
def test_check_request(query: dict, authorization: str | None, conversation: str | None, expected: AuthOutcome) -> None:
    outcome = check_request(query=query, authorization=authorization, token=TOKEN, token_name="token",
                            jwt_secret=SECRET, conversation_id=conversation, now=NOW)
    assert outcome is expected


def test_no_credentials_configured_allows_everything() -> None:
    assert check_request(query={}, authorization=None, token=None, token_name="token", jwt_secret=None,
                         conversation_id=None) is AuthOutcome.ALLOWED


def test_jwt_round_trip_and_garbage() -> None:
    assert decode_jwt(_jwt("admin"), SECRET, now=NOW) == {"user": {"username": "alice", "role": "admin"}}
    for garbage in ("", "a.b", "a.b.c", "!!!.???.###"):
        assert decode_jwt(garbage, SECRET, now=NOW) is None


@pytest.fixture(scope="module")
def server(published: Path) -> Iterator[RunningServer]:
    archive = next((published / ".deltatrain" / "store" / "models").glob("*/model.tar.gz"))
    running = start_server(ArchiveSource(archive), ServeSettings(poll_seconds=0, auth_token=TOKEN,
                                                                 token_name="api_key", jwt_secret=SECRET))
    yield running
    running.stop()


@pytest.mark.slow
def test_server_auth_both_ways(server: RunningServer) -> None:
    parse = server.url + "/model/parse"
    assert requests.get(server.url + "/").status_code == 200  # public, as in Rasa
    assert requests.get(server.url + "/version").status_code == 200
    missing = requests.post(parse, json={"text": "hi"})
    assert missing.status_code == 401 and missing.json()["reason"] == "NotAuthenticated"
    assert "?api_key=" in missing.json()["help"]
    assert requests.post(parse, params={"api_key": "wrong"}, json={"text": "hi"}).status_code == 401
    assert requests.post(parse, params={"token": TOKEN}, json={"text": "hi"}).status_code == 401  # name is api_key
    assert requests.post(parse, params={"api_key": TOKEN}, json={"text": "hi"}).status_code == 200
    assert requests.post(parse, headers={"Authorization": f"Bearer {TOKEN}"}, json={"text": "hi"}).status_code == 200
    assert requests.get(server.url + "/status", params={"api_key": TOKEN}).status_code == 200

    user = {"Authorization": f"Bearer {_jwt('user', exp=time.time() + 60)}"}
    own = requests.post(server.url + "/conversations/alice/messages", headers=user, json={"text": "hi"})
    assert own.status_code == 200
    other = requests.get(server.url + "/conversations/bob/tracker", headers=user)
    assert other.status_code == 403 and other.json()["reason"] == "NotAuthorized"
    assert requests.post(parse, headers=user, json={"text": "hi"}).status_code == 403  # no conversation: admin only
    # an unknown path is 404 whatever the credentials
    assert requests.get(server.url + "/nope").status_code == 404
