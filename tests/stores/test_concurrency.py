"""Publishing under concurrency: compare-and-swap on the manifest, retention, orphans.

The main test runs two real OS processes that publish to one store at the same
moment, 20 rounds, on each backend, and checks the manifest after every round.
"""

from __future__ import annotations

import multiprocessing
import queue
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import BrokenModelError, StoreError, StoreIntegrityError
from pipeline.limits import Limits
from pipeline.stores import ModelStore, open_store
from pipeline.stores.layout import model_keys

from pipeline.stores.http import HttpBackend

from .conftest import (
    FAST_RETRY,
    FixedClock,
    RecordingBackend,
    StoreHarness,
    edit_summary,
    forge_url,
    strip_summaries,
    write_archive,
)
from .fake_http import FakeStoreServer
from .publisher import BARRIER_TIMEOUT, model_name, publish_rounds

ROUNDS = 20
KEEP = 3


def publish(store: ModelStore, uploads: Path, name: str, *, keep: int = 10, seed: int = 0) -> Any:
    return store.publish(
        write_archive(uploads, name, seed=seed, size=1024),
        name=name,
        fingerprint={"sections": {"nlu": name}},
        metadata={"name": name},
        metrics={"intent_f1": 0.9},
        keep=keep,
    )


# ------------------------------------------------------------------ the CAS protocol


def test_put_if_version_creates_only_when_absent_and_replaces_only_the_version_read(
    harness: StoreHarness,
) -> None:
    backend = harness.recorder.inner

    assert backend.get_versioned("manifest.json") is None
    assert backend.put_if_version("manifest.json", b"one", None) is True
    assert backend.put_if_version("manifest.json", b"two", None) is False  # exists now
    first = backend.get_versioned("manifest.json")
    assert first is not None and first.data == b"one"
    assert backend.put_if_version("manifest.json", b"two", first.version) is True
    assert backend.put_if_version("manifest.json", b"three", first.version) is False  # stale
    assert backend.get_bytes("manifest.json") == b"two"


class Interleaving(RecordingBackend):
    """Runs ``other`` (another publisher) right before this store's next manifest write."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.before_write: list[Any] = []

    def put_if_version(self, key: str, data: bytes, expected: str | None) -> bool:
        if key == "manifest.json" and self.before_write:
            self.before_write.pop(0)()
        return super().put_if_version(key, data, expected)


def test_a_publish_racing_another_re_reads_and_keeps_both(harness: StoreHarness) -> None:
    racing = Interleaving(harness.recorder.inner)
    store = ModelStore(racing, clock=FixedClock())
    other = ModelStore(harness.recorder.inner, clock=FixedClock())
    # the other run lists its model between our read of the manifest and each of our writes
    racing.before_write = [lambda: None, lambda: publish(other, harness.uploads, "theirs", seed=1)]

    publish(store, harness.uploads, "ours", seed=2)

    manifest = store.read_manifest()
    assert manifest is not None
    assert [m["name"] for m in manifest["models"]] == ["ours", "theirs"]
    assert "publishing" not in manifest
    assert sum(1 for m, k in racing.calls if m == "put_bytes" and k == "manifest.json") == 3


def test_keep_never_prunes_a_model_another_run_published_meanwhile(harness: StoreHarness) -> None:
    racing = Interleaving(harness.recorder.inner)
    store = ModelStore(racing, clock=FixedClock())
    other = ModelStore(harness.recorder.inner, clock=FixedClock())
    publish(other, harness.uploads, "old")
    racing.before_write = [lambda: None, lambda: publish(other, harness.uploads, "theirs", seed=1)]

    publish(store, harness.uploads, "ours", keep=1, seed=2)

    manifest = store.read_manifest()
    assert manifest is not None
    assert [m["name"] for m in manifest["models"]] == ["ours", "theirs"]  # "old" pruned, "theirs" kept
    assert harness.recorder.inner.exists(model_keys("theirs").archive)
    assert not harness.recorder.inner.exists(model_keys("old").archive)


def test_a_manifest_that_keeps_changing_fails_after_bounded_retries(harness: StoreHarness) -> None:
    racing = Interleaving(harness.recorder.inner)
    store = ModelStore(racing, clock=FixedClock(), cas_attempts=3)
    other = harness.recorder.inner
    racing.before_write = [lambda i=i: other.put_bytes("manifest.json", _empty_manifest(i)) for i in range(3)]

    with pytest.raises(StoreError, match="manifest.json changed 3 times") as raised:
        publish(store, harness.uploads, "ours")
    assert raised.value.hint and "run the job again" in raised.value.hint


def _empty_manifest(index: int) -> bytes:
    return b'{"format": 1, "latest": null, "models": []' + b" " * index + b"}"


# ------------------------------------------------------------------ orphans


def test_files_of_a_failed_manifest_write_are_removed_by_a_later_publish(
    http_server: FakeStoreServer, tmp_path: Path
) -> None:
    clock = FixedClock()
    store = ModelStore(HttpBackend(http_server.url("/store/"), retry=FAST_RETRY), clock=clock)
    publish(store, tmp_path, "good")
    # after the announcement, every manifest write fails, and so does every delete
    http_server.add_fault("PUT", r"manifest\.json$", status=503, skip=1)
    http_server.add_fault("DELETE", r"/models/lost/", status=503)

    with pytest.raises(StoreError, match="503"):
        store.publish(
            write_archive(tmp_path, "lost", size=1024), name="lost", fingerprint={}, metadata={},
            metrics={}, keep=10,
        )
    http_server.faults.clear()
    assert "/store/models/lost/model.tar.gz" in http_server.files
    announced = store.read_manifest()
    assert announced is not None
    assert [p["name"] for p in announced["publishing"]] == ["lost"]

    # within the grace period the files are left alone: that run may still be uploading
    assert publish(store, tmp_path, "next").orphans_removed == ()
    assert "/store/models/lost/model.tar.gz" in http_server.files

    clock.now += timedelta(hours=2)
    later = publish(store, tmp_path, "later")

    assert later.orphans_removed == ("lost",)
    assert not [p for p in http_server.files if "/models/lost/" in p]
    manifest = store.read_manifest()
    assert manifest is not None and "publishing" not in manifest
    assert [m["name"] for m in manifest["models"]] == ["later", "next", "good"]


def test_a_failed_upload_removes_its_files_and_its_announcement(harness: StoreHarness) -> None:
    harness.recorder.inner  # noqa: B018 - the real backend keeps working
    broken = ModelStore(_FailingSideFiles(harness.recorder.inner), clock=FixedClock())

    with pytest.raises(StoreError, match="disk full"):
        publish(broken, harness.uploads, "m1")

    assert not harness.recorder.inner.exists(model_keys("m1").archive)
    manifest = harness.store.read_manifest()
    assert manifest == {"format": 1, "latest": None, "models": []}


class _FailingSideFiles(RecordingBackend):
    def put_bytes(self, key: str, data: bytes) -> None:
        if key.endswith("metrics.json"):
            raise StoreError("disk full")
        super().put_bytes(key, data)


def test_a_name_another_run_is_publishing_is_refused(harness: StoreHarness) -> None:
    clock = FixedClock()
    store = ModelStore(harness.recorder.inner, clock=clock)
    harness.recorder.inner.put_bytes(
        "manifest.json",
        b'{"format": 1, "latest": null, "models": [],'
        b' "publishing": [{"name": "m1", "started_at": "2024-05-01T12:00:30Z"}]}',
    )

    with pytest.raises(StoreError, match="another run is publishing a model called 'm1'"):
        publish(store, harness.uploads, "m1")
    assert not harness.recorder.inner.exists(model_keys("m1").archive)


# ------------------------------------------------------------------ limits and broken entries


def test_an_oversized_manifest_is_refused_before_it_is_parsed(harness: StoreHarness) -> None:
    store = ModelStore(harness.recorder.inner, limits=Limits(max_json_bytes=100))
    harness.recorder.inner.put_bytes("manifest.json", b"{" + b" " * 200 + b"}")

    with pytest.raises(StoreIntegrityError, match="larger than the limit of 100 bytes"):
        store.read_latest()


@pytest.mark.parametrize(
    "leaf, data, message",
    [
        ("metadata.json", b"\xff\xfe{}", "metadata.json is not UTF-8 text"),
        ("metadata.json", b"[]", "must hold a JSON object, received a list"),
        ("metadata.json", b'{"finetunes_in_a_row": "2"}', "finetunes_in_a_row must be a whole number"),
        ("fingerprint.json", b'{"sections": []}', "sections must be an object"),
        ("metrics.json", b'{"intent_f1": "high"}', "intent_f1 must be a number or null, received a string 'high'"),
        ("metrics.json", b"{" + b" " * 5000 + b"}", "larger than the limit of 4096 bytes"),
    ],
    ids=["not-utf8", "metadata-list", "finetunes-string", "sections-list", "metric-string", "too-big"],
)
def test_a_malformed_side_file_makes_the_model_broken_not_the_store(
    harness: StoreHarness, leaf: str, data: bytes, message: str
) -> None:
    store = ModelStore(harness.recorder.inner, limits=Limits(max_json_bytes=4096))
    publish(store, harness.uploads, "m1")
    strip_summaries(harness.recorder.inner)  # a manifest of an older deltatrain: side files decide
    harness.recorder.inner.put_bytes(f"models/m1/{leaf}", data)

    with pytest.raises(BrokenModelError) as raised:
        store.read_latest()
    assert message in raised.value.message
    assert raised.value.model_name == "m1"
    assert str(raised.value.location).endswith(f"models/m1/{leaf}")


@pytest.mark.parametrize(
    "part, value, message",
    [
        ("metadata", [], "summary.metadata (metadata.json): must hold a JSON object, received a list"),
        ("metadata", {"finetunes_in_a_row": "2"}, "finetunes_in_a_row must be a whole number"),
        ("fingerprint_head", {"sections": []}, "sections must be an object"),
        ("metrics", {"intent_f1": "high"}, "intent_f1 must be a number or null, received a string 'high'"),
        ("predictions", "yes", "summary.predictions must be true or false"),
    ],
    ids=["metadata-list", "finetunes-string", "sections-list", "metric-string", "predictions-flag"],
)
def test_a_malformed_inline_summary_makes_the_model_broken_not_the_store(
    harness: StoreHarness, part: str, value: object, message: str
) -> None:
    publish(harness.store, harness.uploads, "m1")
    edit_summary(harness.recorder.inner, "m1", part, value)

    with pytest.raises(BrokenModelError) as raised:
        harness.store.read_latest()
    assert message in raised.value.message
    assert raised.value.model_name == "m1"
    assert str(raised.value.location).endswith("manifest.json (models[m1].summary)")


def test_check_archive_finds_a_missing_or_resized_archive_without_downloading(harness: StoreHarness) -> None:
    publish(harness.store, harness.uploads, "m1")
    latest = harness.store.read_latest()
    assert latest is not None
    harness.store.check_archive(latest)

    harness.recorder.inner.put_bytes(latest.archive_key, b"short")
    with pytest.raises(BrokenModelError, match="has 5 bytes, the manifest lists"):
        harness.store.check_archive(latest)
    harness.recorder.inner.delete(latest.archive_key)
    with pytest.raises(BrokenModelError, match="the store has no such file"):
        harness.store.check_archive(latest)
    assert harness.recorder.reads_of(latest.archive_key) == []


# ------------------------------------------------------------------ two real processes


@pytest.fixture(params=["local", "http", "s3", "github", "gitlab"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(URL, S3 endpoint) of one store that two processes publish to (the forge fakes' URLs
    and tokens reach the spawned processes through the environment, as on a runner)."""
    if request.param in ("github", "gitlab"):
        return forge_url(request.getfixturevalue(f"{request.param}_fake")), None
    if request.param == "local":
        return str(tmp_path / "store"), None
    if request.param == "http":
        server: FakeStoreServer = request.getfixturevalue("http_server")
        return server.url("/store/"), None
    url: str = request.getfixturevalue("s3_url")
    return url, request.getfixturevalue("moto_endpoint")


def test_two_processes_publishing_at_once_never_lose_a_model(
    shared_store: tuple[str, str | None], tmp_path: Path
) -> None:
    url, endpoint = shared_store
    archive = write_archive(tmp_path, "shared", size=4096)
    context = multiprocessing.get_context("spawn")
    start, done = context.Barrier(3), context.Barrier(3)
    errors = context.Queue()
    workers = [
        context.Process(
            target=publish_rounds,
            args=(url, endpoint, worker, ROUNDS, str(archive), KEEP, start, done, errors),
            daemon=True,
        )
        for worker in (1, 2)
    ]
    for process in workers:
        process.start()
    reader = open_store(url, base_dir=tmp_path, s3_endpoint_url=endpoint)
    try:
        for index in range(ROUNDS):
            start.wait(BARRIER_TIMEOUT)
            done.wait(BARRIER_TIMEOUT)
            assert _drain(errors) == []
            manifest = reader.read_manifest()  # parses and validates it
            assert manifest is not None
            names = [m["name"] for m in manifest["models"]]
            both = {model_name(index, 1), model_name(index, 2)}
            assert both <= set(names), f"round {index}: {names}"
            assert manifest["latest"] in both
            assert len(names) <= KEEP + 1  # a model published meanwhile may wait one round
            assert "publishing" not in manifest
            for entry in manifest["models"]:
                assert reader.backend.exists(entry["archive"]), entry["name"]
    finally:
        for process in workers:
            process.join(BARRIER_TIMEOUT)
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in workers] == [0, 0]


def _drain(errors: Any) -> list[str]:
    found = []
    while True:
        try:
            found.append(errors.get(timeout=0.05))
        except queue.Empty:
            return found


def test_unlisted_model_files_older_than_the_grace_period_are_removed_where_listing_works(
    harness: StoreHarness,
) -> None:
    if harness.kind == "http":
        pytest.skip("plain HTTP cannot list keys: only announced uploads are cleaned up there")
    backend = harness.recorder.inner
    now = datetime.now(UTC)
    for leaf in ("model.tar.gz", "metadata.json"):
        backend.put_bytes(f"models/ghost/{leaf}", b"left by a run whose manifest write failed")

    fresh = publish(ModelStore(backend, clock=lambda: now), harness.uploads, "m1")
    assert fresh.orphans_removed == ()  # young files: maybe a run still uploading
    assert backend.exists("models/ghost/model.tar.gz")

    later = publish(ModelStore(backend, clock=lambda: now + timedelta(hours=2)), harness.uploads, "m2")
    assert later.orphans_removed == ("ghost",)
    assert not backend.exists("models/ghost/model.tar.gz")
    assert not backend.exists("models/ghost/metadata.json")
    assert backend.exists(model_keys("m1").archive) and backend.exists(model_keys("m2").archive)


def test_an_http_server_without_etags_still_publishes_by_comparing_content(
    http_server: FakeStoreServer, tmp_path: Path
) -> None:
    http_server.etags = False
    backend = HttpBackend(http_server.url("/store/"), retry=FAST_RETRY)
    racing = Interleaving(backend)
    store = ModelStore(racing, clock=FixedClock())
    other = ModelStore(backend, clock=FixedClock())
    racing.before_write = [lambda: None, lambda: publish(other, tmp_path, "theirs", seed=1)]

    publish(store, tmp_path, "ours", seed=2)

    versioned = backend.get_versioned("manifest.json")
    assert versioned is not None and versioned.version.startswith("sha256:")
    manifest = store.read_manifest()
    assert manifest is not None
    assert [m["name"] for m in manifest["models"]] == ["ours", "theirs"]
