"""What a skip decision costs on each backend: ``read_latest()`` + ``check_archive()``, the two
store calls ``deltatrain ci`` makes before it skips, counted at the real servers and fakes.

A fresh ModelStore stands for a fresh CI process; a second read on the same store is the
warm case (the serve poller, ``store`` commands), where the manifest read is conditional.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import BrokenModelError, StoreError
from pipeline.fingerprint import summarize_changes
from pipeline.stores import ModelStore, open_store
from pipeline.stores.local import LocalBackend
from pipeline.stores.s3 import S3Backend

from ..fake_forges import FakeGitHubReleases, FakeGitLabPackages
from .conftest import FixedClock, forge_url, write_archive
from .fake_http import FakeStoreServer

METRICS = {"intent_f1": 0.9, "predictions": {"format": 1, "rows": [["h", "greet", "greet", 0.9, [], []]]}}


def _fingerprint(examples: int = 3, intents: int = 2) -> dict[str, Any]:
    """A fingerprint's stored form with ``examples`` per-example digests (HWU64: 9,960 in 64 intents)."""
    digests = [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(examples)]
    return {"sections": {"nlu_examples": "a" * 64, "stories": "b" * 64},
            "labels": {"intents": [f"intent_{i}" for i in range(intents)]},
            "examples": {f"intent_{i}": sorted(digests[i::intents]) for i in range(intents)},
            "stories": [], "counts": {"examples": examples}}


FINGERPRINT = _fingerprint()


def _publish(store: ModelStore, tmp_path: Path, name: str, seed: int = 0,
             fingerprint: dict[str, Any] = FINGERPRINT) -> None:
    store.publish(write_archive(tmp_path, name, seed=seed, size=4096), name=name,
                  fingerprint=fingerprint, metadata={"name": name}, metrics=METRICS)


def _skip(store: ModelStore, fingerprint: dict[str, Any] = FINGERPRINT) -> str:
    """What ``deltatrain ci`` asks of the store before it skips."""
    latest = store.read_latest()
    assert latest is not None
    assert summarize_changes(latest.fingerprint, fingerprint).nothing_changed
    store.check_archive(latest)
    assert dict(latest.metrics) == {"intent_f1": 0.9}  # headline only: predictions not read
    return latest.name


def _counted(count: Callable[[], int], action: Callable[[], Any]) -> int:
    before = count()
    action()
    return count() - before


def test_local_skip_reads_the_manifest_and_stats_the_archive(tmp_path: Path) -> None:
    _publish(open_store("store", base_dir=tmp_path), tmp_path, "m1")
    models = tmp_path / "store" / "models" / "m1"
    for side_file in ("fingerprint.json", "metadata.json", "metrics.json"):
        (models / side_file).unlink()  # never read on the skip path

    assert _skip(open_store("store", base_dir=tmp_path)) == "m1"


def test_local_conditional_read_is_a_stat_until_the_file_is_replaced(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put_bytes("manifest.json", b"{}")
    first = backend.get_if_changed("manifest.json", None)
    assert first is not None and first.data == b"{}" and first.token

    assert backend.get_if_changed("manifest.json", first.token) == type(first)(first.token, None)
    backend.put_bytes("manifest.json", b"{ }")
    again = backend.get_if_changed("manifest.json", first.token)
    assert again is not None and again.data == b"{ }" and again.token != first.token
    backend.delete("manifest.json")
    assert backend.get_if_changed("manifest.json", again.token) is None


def test_http_skip_is_one_conditional_get_and_one_head(http_server: FakeStoreServer, tmp_path: Path) -> None:
    url = http_server.url("/store/")
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    store = open_store(url, base_dir=tmp_path)  # a fresh CI process

    assert _counted(lambda: len(http_server.log), lambda: _skip(store)) == 2
    assert http_server.log[-2:] == [("GET", "/store/manifest.json"),
                                    ("HEAD", "/store/models/m1/model.tar.gz")]
    assert _counted(lambda: http_server.not_modified, lambda: _skip(store)) == 1  # warm: 304


def test_s3_skip_is_one_conditional_get_object_and_one_head_object(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    prefix = f"runs/{uuid.uuid4().hex}"
    _publish(ModelStore(S3Backend(s3_client, s3_bucket, prefix), clock=FixedClock()), tmp_path, "m1")
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    s3_client.meta.events.register("before-call.s3", record)
    try:
        store = ModelStore(S3Backend(s3_client, s3_bucket, prefix))
        assert _skip(store) == "m1"
        assert calls == ["GetObject", "HeadObject"]
        calls.clear()
        assert _skip(store) == "m1"  # warm: GetObject with IfNoneMatch, answered 304
        assert calls == ["GetObject", "HeadObject"]
        first = store.backend.get_if_changed("manifest.json", None)  # type: ignore[attr-defined]
        assert first.data is not None
        assert store.backend.get_if_changed("manifest.json", first.token).data is None  # type: ignore[attr-defined]
    finally:
        s3_client.meta.events.unregister("before-call.s3", record)


def test_github_skip_is_one_conditional_get_of_the_release(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    url = forge_url(github_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    store = open_store(url, base_dir=tmp_path)

    assert _counted(lambda: len(github_fake.log), lambda: _skip(store)) == 1
    assert github_fake.log[-1][1].startswith("/api/v3/repos/octo/assistant/releases/tags/")
    assert _counted(lambda: github_fake.not_modified, lambda: _skip(store)) == 1  # warm: 304


def test_github_skip_of_an_hwu64_sized_assistant_is_still_one_request(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    """The per-example digests stay in fingerprint.json: the manifest fits the release body."""
    hwu64 = _fingerprint(examples=9960, intents=64)
    url = forge_url(github_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1", fingerprint=hwu64)
    body = next(iter(github_fake.releases.values()))["body"]
    assert len(body) < 20_000  # the whole fingerprint would be ~200,000 characters

    assert _counted(lambda: len(github_fake.log), lambda: _skip(open_store(url, base_dir=tmp_path), hwu64)) == 1


def test_github_skip_downloads_the_manifest_when_it_does_not_fit_the_release_body(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    github_fake.max_body_chars = 100  # every copy is refused: readers must download the asset
    url = forge_url(github_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    store = open_store(url, base_dir=tmp_path)

    # the release, the asset through the API and its redirect to the file
    assert _counted(lambda: len(github_fake.log), lambda: _skip(store)) == 3


def test_github_never_trusts_a_release_body_that_lags_behind(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    url = forge_url(github_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    copied = next(iter(github_fake.releases.values()))["body"]
    github_fake.add_fault("PATCH", r"/releases/\d+\?", status=500, times=None)  # the copy is lost
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m2", seed=2)
    assert next(iter(github_fake.releases.values()))["body"] == copied  # still m1's manifest
    assert '"latest":"m1"' in copied

    assert _skip(open_store(url, base_dir=tmp_path)) == "m2"


def test_gitlab_skip_is_the_manifest_copy_and_the_model_listing(
    gitlab_fake: FakeGitLabPackages, tmp_path: Path
) -> None:
    url = forge_url(gitlab_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    store = open_store(url, base_dir=tmp_path)

    # fresh: the copy at the fixed name, then the model's file list by the package id it names
    assert _counted(lambda: len(gitlab_fake.log), lambda: _skip(store)) == 2
    model_package = next(i for i, p in gitlab_fake.packages.items() if p["version"] == "m1")
    assert [path.split("?")[0] for _, path in gitlab_fake.log[-2:]] == [
        "/api/v4/projects/acme/assistant/packages/generic/deltatrain-models/deltatrain-store/manifest.json",
        f"/api/v4/projects/acme/assistant/packages/{model_package}/package_files"]
    assert _counted(lambda: len(gitlab_fake.log), lambda: _skip(store)) == 2  # warm: the same


def test_gitlab_copy_follows_every_publish(gitlab_fake: FakeGitLabPackages, tmp_path: Path) -> None:
    url = forge_url(gitlab_fake)
    for round_, name in enumerate(["m1", "m2", "m3"]):
        _publish(open_store(url, base_dir=tmp_path), tmp_path, name, seed=round_)
        assert _skip(open_store(url, base_dir=tmp_path)) == name
    assert gitlab_fake.file_names("deltatrain-store").count("manifest.json") == 1  # older copies deleted


def test_gitlab_without_a_copy_lists_the_generations(gitlab_fake: FakeGitLabPackages, tmp_path: Path) -> None:
    """A store written before the copy existed, or whose copy could not be written."""
    url = forge_url(gitlab_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    gitlab_fake.add_fault("PUT", r"/deltatrain-store/manifest\.json", status=500, times=None)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m2", seed=2)  # the copy fails: m1's is deleted
    assert "manifest.json" not in gitlab_fake.file_names("deltatrain-store")
    store = open_store(url, base_dir=tmp_path)

    assert _skip(store) == "m2"  # never m1's stale copy
    # the copy (404), the package lookup, the store version's files, the manifest, the model's files
    assert _counted(lambda: len(gitlab_fake.log), lambda: _skip(open_store(url, base_dir=tmp_path))) == 5


def test_gitlab_a_copy_that_lands_after_a_newer_generation_is_removed(
    gitlab_fake: FakeGitLabPackages, tmp_path: Path
) -> None:
    """A slow winner of generation n uploads its copy after generation n+1 won: it deletes it."""
    from pipeline.stores.gitlab import STORE_VERSION, GitLabPackagesBackend

    url = forge_url(gitlab_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m2", seed=2)  # generation 2 now
    slow = open_store(url, base_dir=tmp_path).backend
    assert isinstance(slow, GitLabPackagesBackend)
    generations = {int(f.file_name.split(".")[1]): f for f in reversed(slow._files(STORE_VERSION))
                   if f.file_name != "manifest.json"}
    older = min(generations)
    assert older < max(generations)

    slow._won = (older, generations[older].id)
    slow._write_copy(older, b'{"stale": true}')  # an older winner's late copy

    assert _skip(open_store(url, base_dir=tmp_path)) == "m2"
    assert gitlab_fake.file_names("deltatrain-store").count("manifest.json") == 1


@pytest.mark.parametrize("kind", ["http", "github"])
def test_a_missing_archive_still_stops_the_skip(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """check_archive stays a real check (issue 12): a deleted archive is a broken model."""
    if kind == "http":
        server: FakeStoreServer = request.getfixturevalue("http_server")
        url = server.url("/store/")
    else:
        url = forge_url(request.getfixturevalue("github_fake"))
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    open_store(url, base_dir=tmp_path).backend.delete("models/m1/model.tar.gz")
    store = open_store(url, base_dir=tmp_path)
    latest = store.read_latest()
    assert latest is not None

    with pytest.raises(BrokenModelError, match="the store has no such file"):
        store.check_archive(latest)


def test_predictions_are_read_only_when_asked_for(http_server: FakeStoreServer, tmp_path: Path) -> None:
    url = http_server.url("/store/")
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    latest = open_store(url, base_dir=tmp_path).read_latest()
    assert latest is not None
    before = len(http_server.requests("GET", r"metrics\.json$"))

    assert latest.metrics.get("predictions") == METRICS["predictions"]
    assert latest.metrics["predictions"] == METRICS["predictions"]  # read once
    assert len(http_server.requests("GET", r"metrics\.json$")) - before == 1


def test_unreadable_predictions_count_as_not_stored_and_say_why(
    http_server: FakeStoreServer, tmp_path: Path
) -> None:
    url = http_server.url("/store/")
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    open_store(url, base_dir=tmp_path).backend.delete("models/m1/metrics.json")
    latest = open_store(url, base_dir=tmp_path).read_latest()
    assert latest is not None

    assert latest.metrics.get("predictions") is None
    assert "metrics.json" in (latest.metrics.problem or "")  # type: ignore[attr-defined]


def test_the_serve_poller_shares_the_conditional_read(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    from pipeline.serve.watch import ConditionalWatcher, build_watcher

    url = forge_url(github_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    watcher = build_watcher(open_store(url, base_dir=tmp_path), None)
    assert isinstance(watcher, ConditionalWatcher)

    first = watcher.read(None)
    assert first.changed and first.data is not None and b"m1" in first.data
    before = github_fake.not_modified
    again = watcher.read(first.token)
    assert (again.changed, again.data, github_fake.not_modified - before) == (False, None, 1)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m2", seed=2)
    moved = watcher.read(first.token)
    assert moved.changed and moved.data is not None and b'"latest":"m2"' in moved.data


def test_gitlab_a_reader_never_goes_back_to_an_older_copy(
    gitlab_fake: FakeGitLabPackages, tmp_path: Path
) -> None:
    """Between a slow writer's late copy and its clean-up, a reader that saw newer lists instead."""
    from pipeline.stores.gitlab import STORE_VERSION, GitLabPackagesBackend

    url = forge_url(gitlab_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    reader = open_store(url, base_dir=tmp_path)
    backend = reader.backend
    assert isinstance(backend, GitLabPackagesBackend)
    stale = backend._read(STORE_VERSION, "manifest.json", None)  # m1's copy, as it was
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m2", seed=2)
    assert _skip(reader) == "m2"
    backend._upload(STORE_VERSION, "manifest.json", stale, len(stale))  # the late copy, now served

    assert _skip(reader) == "m2"  # not m1: the copy is older than what this reader saw


def test_gitlab_a_failed_delete_of_the_copy_fails_the_write_before_the_manifest_moves(
    gitlab_fake: FakeGitLabPackages, tmp_path: Path
) -> None:
    url = forge_url(gitlab_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    gitlab_fake.add_fault("DELETE", r"/package_files/\d+", status=500, times=None)

    with pytest.raises(StoreError):
        _publish(open_store(url, base_dir=tmp_path), tmp_path, "m2", seed=2)

    gitlab_fake.faults.clear()
    assert _skip(open_store(url, base_dir=tmp_path)) == "m1"  # copy and listing agree


def test_gitlab_copy_where_the_project_refuses_duplicate_names(
    gitlab_fake: FakeGitLabPackages, tmp_path: Path
) -> None:
    gitlab_fake.duplicates_allowed = False
    url = forge_url(gitlab_fake)
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m1")
    _publish(open_store(url, base_dir=tmp_path), tmp_path, "m2", seed=2)

    assert _counted(lambda: len(gitlab_fake.log), lambda: _skip(open_store(url, base_dir=tmp_path))) == 2
    assert _skip(open_store(url, base_dir=tmp_path)) == "m2"
