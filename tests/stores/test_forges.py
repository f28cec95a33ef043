"""GitHub Releases and GitLab generic-package stores against local fakes of their APIs:
faults during each upload step, rate limits, pagination, tokens and their error messages."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import StoreAuthError, StoreError, StoreNotFoundError
from pipeline.stores import ModelStore, open_store
from pipeline.stores.backend import BackendOptions
from pipeline.stores.github import GitHubReleasesBackend
from pipeline.stores.gitlab import GitLabPackagesBackend
from pipeline.stores.gitlab import open_backend as open_gitlab

from ..fake_forges import (
    GITHUB_TOKEN,
    GITLAB_TOKEN,
    JOB_TOKEN,
    FakeForge,
    FakeGitHubReleases,
    FakeGitLabPackages,
)
from .conftest import FAST_RETRY, FixedClock, StoreHarness, forge_url, write_archive

FINGERPRINT = {"sections": {"nlu": "a" * 64}}


def github_store(fake: FakeGitHubReleases) -> ModelStore:
    backend = GitHubReleasesBackend("octo", "assistant", "models-test", token=GITHUB_TOKEN,
                                    api_url=fake.api_url, retry=FAST_RETRY)
    return ModelStore(backend, clock=FixedClock())


def gitlab_store(fake: FakeGitLabPackages) -> ModelStore:
    backend = GitLabPackagesBackend(
        "127.0.0.1", "acme/assistant", "deltatrain-models", headers={"PRIVATE-TOKEN": GITLAB_TOKEN},
        api_url=fake.api_url, token_hint="set GITLAB_TOKEN", retry=FAST_RETRY,
    )
    return ModelStore(backend, clock=FixedClock())


@pytest.fixture(params=["github", "gitlab"])
def forge(request: pytest.FixtureRequest) -> tuple[FakeForge, ModelStore]:
    fake = request.getfixturevalue(f"{request.param}_fake")
    store = github_store(fake) if request.param == "github" else gitlab_store(fake)
    return fake, store


def publish(store: ModelStore, tmp_path: Path, name: str, seed: int = 0) -> Any:
    return store.publish(
        write_archive(tmp_path, name, seed=seed, size=8192), name=name,
        fingerprint=FINGERPRINT, metadata={"name": name}, metrics={"intent_f1": 0.9},
    )


#: (what, pattern of the request that uploads it) per forge, for model "m2".
UPLOAD_STEPS = {
    "github": {
        "archive": r"assets\?name=models--m2--model\.tar\.gz",
        "side file": r"assets\?name=models--m2--metrics\.json",
        "manifest": r"assets\?name=manifest\.",
    },
    "gitlab": {
        "archive": r"/generic/deltatrain-models/m2/model\.tar\.gz",
        "side file": r"/generic/deltatrain-models/m2/metrics\.json",
        "manifest": r"/generic/deltatrain-models/deltatrain-store/manifest\.",
    },
}
UPLOAD_METHOD = {"github": "POST", "gitlab": "PUT"}
FAULTS = {
    "503": {"status": 503},
    "dropped connection": {"drop": True},
    "rate limit": {"status": 429, "headers": {"Retry-After": "0"}},
    "secondary rate limit": {"status": 403, "headers": {"Retry-After": "0"}},
}


def _kind(fake: FakeForge) -> str:
    return "github" if isinstance(fake, FakeGitHubReleases) else "gitlab"


@pytest.mark.parametrize("step", ["archive", "side file", "manifest"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_during_an_upload_step_is_retried_and_latest_is_complete(
    forge: tuple[FakeForge, ModelStore], tmp_path: Path, step: str, fault: str
) -> None:
    fake, store = forge
    publish(store, tmp_path, "m1")
    kind = _kind(fake)
    injected = fake.add_fault(UPLOAD_METHOD[kind], UPLOAD_STEPS[kind][step], **FAULTS[fault])

    publish(store, tmp_path, "m2", seed=2)

    assert injected.hits == 1  # the fault was hit once ...
    assert len(fake.requests(UPLOAD_METHOD[kind], UPLOAD_STEPS[kind][step])) >= 2  # ... and retried
    latest = store.read_latest()
    assert latest is not None and latest.name == "m2"
    store.download("m2", tmp_path / "out")  # verifies sha256 and size


@pytest.mark.parametrize("step", ["archive", "side file", "manifest"])
def test_an_upload_step_that_keeps_failing_leaves_the_previous_model_latest(
    forge: tuple[FakeForge, ModelStore], tmp_path: Path, step: str
) -> None:
    fake, store = forge
    publish(store, tmp_path, "m1")
    kind = _kind(fake)
    fake.add_fault(UPLOAD_METHOD[kind], UPLOAD_STEPS[kind][step], status=502, times=None)

    with pytest.raises(StoreError, match="HTTP 502"):
        publish(store, tmp_path, "m2", seed=2)

    manifest = store.read_manifest()
    assert manifest is not None and manifest["latest"] == "m1"
    assert [m["name"] for m in manifest["models"]] == ["m1"]
    assert "publishing" not in manifest  # the failed run withdrew its announcement
    store.download("m1", tmp_path / "out")


def test_the_primary_rate_limit_reset_is_waited_for(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    store = github_store(github_fake)
    publish(store, tmp_path, "m1")
    reset = int(time.time()) + 1
    github_fake.add_fault("GET", r"/releases/tags/", status=429, headers={
        "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})

    assert store.read_latest() is not None

    assert time.time() >= reset  # waited until the reset, not the (10 ms) backoff


def test_the_release_is_a_prerelease_never_marked_latest(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    publish(github_store(github_fake), tmp_path, "m1")

    (release,) = github_fake.releases.values()
    assert release["tag_name"] == "models-test"
    assert release["make_latest"] == "false" and release["prerelease"] is True
    assert "models--m1--model.tar.gz" in github_fake.asset_names()
    assert any(n.startswith("manifest.") for n in github_fake.asset_names())


def test_asset_and_package_lists_are_read_page_by_page(
    forge: tuple[FakeForge, ModelStore], tmp_path: Path
) -> None:
    fake, store = forge
    fake.max_per_page = 2  # every list needs several pages
    if isinstance(fake, FakeGitHubReleases):  # and a release embeds only one page of assets
        fake.max_embedded_assets = store.backend.embedded_assets = 2  # type: ignore[attr-defined]
    for index in range(3):
        publish(store, tmp_path, f"m{index}", seed=index)

    latest = store.read_latest()

    assert latest is not None and latest.name == "m2"
    assert len(store.read_manifest()["models"]) == 3  # type: ignore[index]
    assert fake.requests("GET", r"[?&]page=2")  # followed rel="next"
    store.download("m0", tmp_path / "out")


def test_a_read_only_token_is_reported_with_the_fork_hint(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    store = github_store(github_fake)
    publish(store, tmp_path, "m1")
    github_fake.read_only = True

    with pytest.raises(StoreAuthError) as caught:
        publish(store, tmp_path, "m2")

    rendered = caught.value.render()
    assert "Resource not accessible by integration" in rendered
    assert "fork" in rendered and "contents: write" in rendered
    assert GITHUB_TOKEN not in rendered
    assert store.read_latest().name == "m1"  # type: ignore[union-attr]


def test_a_wrong_github_token_is_a_clear_auth_error(
    github_fake: FakeGitHubReleases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_wrong")
    store = open_store(forge_url(github_fake), base_dir=tmp_path)

    with pytest.raises(StoreAuthError, match="Bad credentials") as caught:
        store.read_latest()
    assert "GITHUB_TOKEN" in caught.value.render() and "ghs_wrong" not in caught.value.render()


def test_an_unknown_gitlab_project_is_not_found(
    gitlab_fake: FakeGitLabPackages, tmp_path: Path
) -> None:
    store = open_store(f"gitlab://{gitlab_fake.origin.split('://')[1]}/acme/other/models",
                       base_dir=tmp_path)

    with pytest.raises(StoreError, match="Project Not Found") as caught:
        store.read_latest()
    assert not isinstance(caught.value, StoreNotFoundError)  # not mistaken for an empty store


def test_an_unknown_github_repository_is_not_an_empty_store(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    store = open_store("github://octo/nothing-here", base_dir=tmp_path)

    with pytest.raises(StoreError, match="no repository octo/nothing-here") as caught:
        store.read_latest()
    assert not isinstance(caught.value, StoreNotFoundError)


def test_gitlab_sends_the_job_token_inside_ci_and_the_private_token_outside(
    gitlab_fake: FakeGitLabPackages, tmp_path: Path
) -> None:
    url = forge_url(gitlab_fake)
    api = {"CI_API_V4_URL": gitlab_fake.api_url}
    inside = open_gitlab(url, BackendOptions(tmp_path),
                         {**api, "GITLAB_CI": "true", "CI_JOB_TOKEN": JOB_TOKEN})
    outside = open_gitlab(url, BackendOptions(tmp_path, token=GITLAB_TOKEN), api)

    assert inside.client.session.headers["JOB-TOKEN"] == JOB_TOKEN
    assert outside.client.session.headers["PRIVATE-TOKEN"] == GITLAB_TOKEN
    assert "JOB-TOKEN" not in outside.client.session.headers
    inside.put_bytes("models/m/metrics.json", b"{}")
    assert outside.get_bytes("models/m/metrics.json") == b"{}"


def test_gitlab_projects_that_refuse_duplicates_still_replace_files(
    gitlab_fake: FakeGitLabPackages, tmp_path: Path
) -> None:
    gitlab_fake.duplicates_allowed = False
    store = gitlab_store(gitlab_fake)
    publish(store, tmp_path, "m1")
    publish(store, tmp_path, "m1", seed=5)  # the same name again: every file replaced

    assert gitlab_fake.file_names("m1").count("model.tar.gz") == 1
    store.download("m1", tmp_path / "out")


def test_gitlab_duplicates_are_cleaned_so_one_file_per_name_stays(
    gitlab_fake: FakeGitLabPackages, tmp_path: Path
) -> None:
    store = gitlab_store(gitlab_fake)
    publish(store, tmp_path, "m1")
    publish(store, tmp_path, "m1", seed=5)

    assert gitlab_fake.file_names("m1") == sorted(
        ["model.tar.gz", "fingerprint.json", "metadata.json", "metrics.json"])
    store_files = gitlab_fake.file_names("deltatrain-store")
    generations = [n for n in store_files if n.startswith("manifest.") and n != "manifest.json"]
    assert len(generations) <= 3  # old generations are deleted
    assert store_files.count("manifest.json") == 1  # the readers' copy: one, the newest


def test_a_fork_pull_requests_read_only_token_is_its_own_error(
    github_fake: FakeGitHubReleases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.stores.forge import ReadOnlyTokenError

    store = github_store(github_fake)
    publish(store, tmp_path, "m1")
    github_fake.read_only = True
    monkeypatch.setenv("GITHUB_EVENT_NAME", "pull_request")

    with pytest.raises(ReadOnlyTokenError, match="read-only") as caught:
        publish(store, tmp_path, "m2")
    assert "not uploaded" in caught.value.render()


def test_latest_stays_on_the_model_of_the_newer_commit_whichever_run_lists_last(
    harness: StoreHarness,
) -> None:
    def publish_at(name: str, committed_at: str, seed: int) -> None:
        harness.store.publish(
            harness.archive(name, seed=seed), name=name, fingerprint=FINGERPRINT,
            metadata={"name": name, "git": {"commit": name * 8, "committed_at": committed_at}},
            metrics={"intent_f1": 0.9}, committed_at=committed_at,
        )

    publish_at("newer", "2024-05-02T10:00:00Z", 1)
    publish_at("older", "2024-05-01T10:00:00Z", 2)  # a slower pipeline of an earlier commit

    manifest = harness.store.read_manifest()
    assert manifest is not None and manifest["latest"] == "newer"
    assert [m["name"] for m in manifest["models"]] == ["newer", "older"]
    latest = harness.store.read_latest()
    assert latest is not None and latest.newer == ()  # not mistaken for a rollback
    publish_at("newest", "2024-05-03T10:00:00Z", 3)
    assert harness.store.read_manifest()["latest"] == "newest"  # type: ignore[index]


def test_an_empty_starter_asset_left_by_a_failed_upload_does_not_block_the_manifest(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    store = github_store(github_fake)
    publish(store, tmp_path, "m1")
    names = github_fake.asset_names()
    newest = max(int(n.split(".")[1]) for n in names if n.startswith("manifest."))
    with github_fake.lock:  # what GitHub leaves after a 502 from upstream
        (release_id,) = github_fake.releases
        github_fake.assets[999] = {
            "id": 999, "name": f"manifest.{newest + 1}.json", "size": 0, "state": "starter",
            "created_at": "", "updated_at": "", "url": f"{github_fake.api_url}/x",
            "_release": release_id, "_data": b"",
        }

    assert store.read_latest().name == "m1"  # type: ignore[union-attr]  # skipped by readers
    publish(store, tmp_path, "m2", seed=2)

    assert store.read_latest().name == "m2"  # type: ignore[union-attr]
    assert 999 not in github_fake.assets


def test_a_used_up_primary_rate_limit_on_403_names_the_reset_time(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    store = github_store(github_fake)
    reset = int(time.time()) + 3600  # an hour away: reported, not waited for
    github_fake.add_fault("GET", r"/releases/tags/", status=403, times=None, headers={
        "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    started = time.monotonic()

    with pytest.raises(StoreError, match="rate limit is used up until") as caught:
        store.read_latest()
    assert time.monotonic() - started < 5  # not waited for
    assert not isinstance(caught.value, StoreAuthError)  # not a token problem
    assert "more than the 120 s this job may wait" in caught.value.message
    assert "DELTATRAIN_RATE_LIMIT_MAX_WAIT" in caught.value.render()
    assert len(github_fake.requests("GET", r"/releases/tags/")) == 1


def test_a_403_without_retry_after_waits_until_the_primary_limit_resets(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    store = github_store(github_fake)
    publish(store, tmp_path, "m1")
    reset = int(time.time()) + 1
    github_fake.add_fault("GET", r"/releases/tags/", status=403, headers={
        "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})

    assert store.read_latest().name == "m1"  # type: ignore[union-attr]

    assert time.time() >= reset  # waited for the reset, not the (10 ms) backoff


SECONDARY = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}


def _secondary_store(fake: FakeGitHubReleases, *, secondary_wait: float, max_wait: float) -> ModelStore:
    retry = replace(FAST_RETRY, secondary_wait=secondary_wait, max_wait=max_wait)
    backend = GitHubReleasesBackend("octo", "assistant", "models-test", token=GITHUB_TOKEN,
                                    api_url=fake.api_url, retry=retry)
    return ModelStore(backend, clock=FixedClock())


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_rate_limit_without_retry_after_waits_the_secondary_wait(
    github_fake: FakeGitHubReleases, tmp_path: Path, status: int
) -> None:
    publish(github_store(github_fake), tmp_path, "m1")
    store = _secondary_store(github_fake, secondary_wait=0.5, max_wait=10)
    github_fake.add_fault("GET", r"/releases/tags/", status=status, body=SECONDARY, headers={
        "x-ratelimit-remaining": "4000", "x-ratelimit-reset": str(int(time.time()) + 3600)})
    before = len(github_fake.requests("GET", r"/releases/tags/"))
    started = time.monotonic()

    assert store.read_latest().name == "m1"  # type: ignore[union-attr]

    assert time.monotonic() - started >= 0.5  # the secondary wait, not the 10 ms backoff
    assert len(github_fake.requests("GET", r"/releases/tags/")) - before == 2


def test_a_secondary_rate_limit_longer_than_the_max_wait_is_a_clear_error(
    github_fake: FakeGitHubReleases, tmp_path: Path
) -> None:
    store = _secondary_store(github_fake, secondary_wait=60, max_wait=1)
    github_fake.add_fault("GET", r"/releases/tags/", status=403, body=SECONDARY, times=None)
    started = time.monotonic()

    with pytest.raises(StoreError, match="secondary rate limit") as caught:
        store.read_latest()

    assert time.monotonic() - started < 5
    assert not isinstance(caught.value, StoreAuthError)
    assert "asks for a 60 s wait, more than the 1 s this job may wait" in caught.value.message
    assert len(github_fake.requests("GET", r"/releases/tags/")) == 1


def test_a_refusing_403_is_not_retried(github_fake: FakeGitHubReleases) -> None:
    store = github_store(github_fake)
    github_fake.add_fault("GET", r"/releases/tags/", status=403, times=None,
                          body={"message": "Resource not accessible by integration"})

    with pytest.raises(StoreAuthError, match="Resource not accessible by integration"):
        store.read_latest()

    assert len(github_fake.requests("GET", r"/releases/tags/")) == 1


def test_the_max_wait_comes_from_the_environment() -> None:
    from pipeline.stores.forge import forge_retry

    assert forge_retry({"DELTATRAIN_RATE_LIMIT_MAX_WAIT": "600"}).max_wait == 600
    assert forge_retry({}).max_wait == 120 and forge_retry({}).secondary_wait == 60
    with pytest.raises(StoreError, match="must be a number of seconds >= 0, received 'soon'"):
        forge_retry({"DELTATRAIN_RATE_LIMIT_MAX_WAIT": "soon"})


def test_a_plain_manifest_write_gives_up_after_bounded_conflicts() -> None:
    """Another run winning every generation ends in a StoreError, not an endless loop."""
    from pipeline.errors import StoreError
    from pipeline.stores.backend import CAS_ATTEMPTS, Versioned
    from pipeline.stores.forge import write_manifest_generation

    class AlwaysLoses:
        def __init__(self) -> None:
            self.tries = 0

        def get_versioned(self, key: str) -> Versioned:
            return Versioned(b"{}", str(self.tries))

        def put_if_version(self, key: str, data: bytes, expected: str | None) -> bool:
            self.tries += 1
            return False

        def describe(self, key: str) -> str:
            return f"fake://{key}"

    backend = AlwaysLoses()
    with pytest.raises(StoreError, match=f"changed {CAS_ATTEMPTS} times"):
        write_manifest_generation(backend, b"{}")  # type: ignore[arg-type]
    assert backend.tries == CAS_ATTEMPTS
