"""HttpBackend against a real local server that fails on purpose."""

from __future__ import annotations

import logging
import socket
import traceback
from pathlib import Path

import pytest

from pipeline.errors import StoreAuthError, StoreError, StoreIntegrityError
from pipeline.stores import ModelStore, open_store
from pipeline.stores.http import HttpBackend, RetryPolicy

from .conftest import FAST_RETRY, FixedClock, write_archive
from .fake_http import FakeStoreServer

TOKEN = "s3cr3t-token-value"
ARCHIVE_PUT = r"/models/new/model\.tar\.gz$"


def http_store(
    server: FakeStoreServer,
    *,
    token: str | None = None,
    retry: RetryPolicy = FAST_RETRY,
    timeout: tuple[float, float] = (2.0, 2.0),
    path: str = "/store/",
) -> ModelStore:
    return ModelStore(
        HttpBackend(server.url(path), token=token, retry=retry, timeout=timeout), clock=FixedClock()
    )


def publish(store: ModelStore, tmp_path: Path, name: str, seed: int = 0) -> None:
    store.publish(
        write_archive(tmp_path, name, seed=seed),
        name=name,
        fingerprint={"nlu": name},
        metadata={},
        metrics={},
    )


@pytest.fixture
def store_with_old(http_server: FakeStoreServer, tmp_path: Path) -> ModelStore:
    """A store whose latest model is ``old``."""
    store = http_store(http_server)
    publish(store, tmp_path, "old", seed=1)
    return store


def assert_still_old(store: ModelStore) -> None:
    manifest = store.read_manifest()
    assert manifest is not None and manifest["latest"] == "old"
    assert [m["name"] for m in manifest["models"]] == ["old"]
    latest = store.read_latest()
    assert latest is not None and latest.name == "old" and latest.fingerprint == {"nlu": "old"}


def test_server_errors_are_retried_until_success(
    http_server: FakeStoreServer, store_with_old: ModelStore, tmp_path: Path
) -> None:
    http_server.add_fault("PUT", ARCHIVE_PUT, status=500, times=2)

    publish(store_with_old, tmp_path, "new")

    assert len(http_server.requests("PUT", ARCHIVE_PUT)) == 3
    latest = store_with_old.read_latest()
    assert latest is not None and latest.name == "new"


def test_retried_reads(http_server: FakeStoreServer, store_with_old: ModelStore) -> None:
    http_server.add_fault("GET", r"manifest\.json$", status=503, times=2)

    assert_still_old(store_with_old)


def test_persistent_archive_failure_keeps_the_previous_model(
    http_server: FakeStoreServer, store_with_old: ModelStore, tmp_path: Path
) -> None:
    http_server.add_fault("PUT", ARCHIVE_PUT, status=500)

    with pytest.raises(StoreError, match=r"HTTP 500") as raised:
        publish(store_with_old, tmp_path, "new")

    assert type(raised.value) is StoreError
    assert "models/new/model.tar.gz" in str(raised.value)
    assert len(http_server.requests("PUT", ARCHIVE_PUT)) == FAST_RETRY.attempts
    assert_still_old(store_with_old)
    assert not [p for p in http_server.files if "/models/new/" in p]


@pytest.mark.parametrize("times", [None, 1], ids=["always", "once"])
def test_connection_dropped_mid_upload(
    http_server: FakeStoreServer, store_with_old: ModelStore, tmp_path: Path, times: int | None
) -> None:
    http_server.add_fault("PUT", ARCHIVE_PUT, drop=True, times=times)

    if times is None:
        with pytest.raises(StoreError, match="failed after 3 attempt"):
            publish(store_with_old, tmp_path, "new")
        assert_still_old(store_with_old)
    else:
        publish(store_with_old, tmp_path, "new")
        latest = store_with_old.read_latest()
        assert latest is not None and latest.name == "new"
        assert (
            store_with_old.download("new", tmp_path / "d").read_bytes()
            == (tmp_path / "new-0.tar.gz").read_bytes()
        )


def test_failed_manifest_write_keeps_the_previous_model(
    http_server: FakeStoreServer, store_with_old: ModelStore, tmp_path: Path
) -> None:
    http_server.add_fault("PUT", r"/manifest\.json$", status=500)

    with pytest.raises(StoreError, match=r"manifest\.json"):
        publish(store_with_old, tmp_path, "new")

    http_server.faults.clear()
    assert_still_old(store_with_old)


def test_failed_side_file_removes_the_uploaded_archive(
    http_server: FakeStoreServer, store_with_old: ModelStore, tmp_path: Path
) -> None:
    http_server.add_fault("PUT", r"/models/new/metrics\.json$", status=502)

    with pytest.raises(StoreError):
        publish(store_with_old, tmp_path, "new")

    assert_still_old(store_with_old)
    assert not [p for p in http_server.files if "/models/new/" in p]


def test_truncated_upload_is_caught_before_the_manifest(
    http_server: FakeStoreServer, store_with_old: ModelStore, tmp_path: Path
) -> None:
    http_server.add_fault("PUT", ARCHIVE_PUT, truncate=True)

    with pytest.raises(StoreIntegrityError, match="expected"):
        publish(store_with_old, tmp_path, "new")

    assert_still_old(store_with_old)


def test_missing_token_is_an_auth_error(http_server: FakeStoreServer) -> None:
    http_server.token = TOKEN

    with pytest.raises(StoreAuthError) as raised:
        http_store(http_server).read_latest()

    message = str(raised.value)
    assert "HTTP 401" in message and http_server.url("/store/manifest.json") in message
    assert "DELTATRAIN_STORE_TOKEN" in message
    assert len(http_server.requests("GET")) == 1  # auth failures are not retried


def test_wrong_token_never_appears_in_errors_or_logs(
    http_server: FakeStoreServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    http_server.token = "the-right-one"
    caplog.set_level(logging.DEBUG)
    store = http_store(http_server, token=TOKEN)

    with pytest.raises(StoreAuthError) as raised:
        publish(store, tmp_path, "new")

    exc = raised.value
    for text in (
        str(exc),
        repr(exc),
        exc.render(),
        "".join(traceback.format_exception(exc)),
        repr(store),
        repr(store.backend),
        caplog.text,
    ):
        assert TOKEN not in text


def test_correct_token_is_sent_as_bearer(http_server: FakeStoreServer, tmp_path: Path) -> None:
    http_server.token = TOKEN
    store = open_store(http_server.url("/store/"), base_dir=tmp_path, token=TOKEN)

    publish(store, tmp_path, "m1")

    latest = store.read_latest()
    assert latest is not None and latest.name == "m1"


def test_forbidden_is_an_auth_error(http_server: FakeStoreServer) -> None:
    http_server.add_fault("*", "", status=403)

    with pytest.raises(StoreAuthError, match="HTTP 403"):
        http_store(http_server).read_latest()


def test_missing_base_url_reads_as_an_empty_store(http_server: FakeStoreServer) -> None:
    assert http_store(http_server, path="/no/such/place/").read_latest() is None


def test_unreachable_server_is_a_store_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # bound, then closed: nothing listens on the port
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/store/"
    store = ModelStore(HttpBackend(url, retry=FAST_RETRY, timeout=(1.0, 1.0)))

    with pytest.raises(StoreError, match="failed after 3 attempt"):
        store.read_latest()


def test_timeouts_are_retried_then_reported(http_server: FakeStoreServer) -> None:
    http_server.add_fault("GET", r"manifest\.json$", stall=0.5)
    store = http_store(http_server, retry=RetryPolicy(attempts=2, backoff=0.01), timeout=(1.0, 0.1))

    with pytest.raises(StoreError, match="ReadTimeout"):
        store.read_latest()

    assert len(http_server.requests("GET")) == 2


def test_webdav_parent_collections_are_created(
    http_server: FakeStoreServer, tmp_path: Path
) -> None:
    http_server.webdav_strict = True
    http_server.collections.add("/store/")
    store = http_store(http_server)

    publish(store, tmp_path, "m1")

    assert {"/store/models/", "/store/models/m1/"} <= http_server.collections
    latest = store.read_latest()
    assert latest is not None and latest.name == "m1"


def test_servers_without_head_are_asked_with_get(
    http_server: FakeStoreServer, tmp_path: Path
) -> None:
    http_server.add_fault("HEAD", "", status=405)
    store = http_store(http_server)

    publish(store, tmp_path, "m1")

    assert store.backend.exists("models/m1/model.tar.gz")
    assert not store.backend.exists("models/m2/model.tar.gz")
    assert http_server.requests("GET", r"model\.tar\.gz$")  # the HEAD fallback


def test_credentials_in_the_url_are_not_displayed(http_server: FakeStoreServer) -> None:
    url = http_server.url("/store/").replace("http://", "http://user:pa55word@")
    backend = HttpBackend(url, retry=FAST_RETRY)

    assert "pa55word" not in backend.describe("") + backend.describe("manifest.json") + repr(
        backend
    )


def test_query_strings_are_refused(http_server: FakeStoreServer) -> None:
    with pytest.raises(StoreError, match="query") as raised:
        HttpBackend(http_server.url("/store/?private_token=abc"))

    assert "abc" not in str(raised.value)
