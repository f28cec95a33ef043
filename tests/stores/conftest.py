"""Real stores for the store tests: a tmp folder, a local HTTP server, a moto S3 server."""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.stores import ModelStore, open_store
from pipeline.stores.backend import Backend, Conditional, ConditionalBackend, Versioned, content_version
from pipeline.stores.http import RetryPolicy
from pipeline.stores.s3 import S3Backend

from ..fake_forges import GITHUB_TOKEN, GITLAB_TOKEN, FakeGitHubReleases, FakeGitLabPackages
from .fake_http import FakeStoreServer

FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, max_delay=0.02)
AWS_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def write_archive(directory: Path, name: str, *, seed: int = 0, size: int = 64 * 1024) -> Path:
    """Write a real, byte-reproducible tar.gz of ``size`` incompressible bytes; return its path."""
    payload = random.Random(seed).randbytes(size)
    path = directory / f"{name}-{seed}.tar.gz"
    info = tarfile.TarInfo("model/weights.bin")
    info.size = len(payload)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        tar.addfile(info, io.BytesIO(payload))
    return path


class FixedClock:
    """A clock that advances one minute per call, from 2024-05-01 12:00 UTC."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


class RecordingBackend:
    """Passes every call to a real backend and records (method, key)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def reads_of(self, key: str) -> list[str]:
        return [m for m, k in self.calls if k == key and m in ("get_bytes", "get_to_file")]

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        self.calls.append(("get_bytes", key))
        return self.inner.get_bytes(key, max_bytes=max_bytes)

    def get_versioned(self, key: str, *, max_bytes: int | None = None) -> Versioned | None:
        self.calls.append(("get_bytes", key))
        return self.inner.get_versioned(key, max_bytes=max_bytes)

    def get_if_changed(
        self, key: str, token: str | None, *, max_bytes: int | None = None
    ) -> Conditional | None:
        """The inner backend's conditional read; a plain read on backends without one."""
        self.calls.append(("get_bytes", key))
        if isinstance(self.inner, ConditionalBackend):
            return self.inner.get_if_changed(key, token, max_bytes=max_bytes)
        found = self.inner.get_versioned(key, max_bytes=max_bytes)
        return None if found is None else Conditional(content_version(found.data), found.data)

    def put_if_version(self, key: str, data: bytes, expected: str | None) -> bool:
        self.calls.append(("put_bytes", key))
        return self.inner.put_if_version(key, data, expected)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.calls.append(("put_bytes", key))
        self.inner.put_bytes(key, data)

    def put_file(self, key: str, path: Path) -> None:
        self.calls.append(("put_file", key))
        self.inner.put_file(key, path)

    def get_to_file(self, key: str, path: Path) -> None:
        self.calls.append(("get_to_file", key))
        self.inner.get_to_file(key, path)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def size(self, key: str) -> int | None:
        return self.inner.size(key)

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        self.inner.delete(key)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)


def strip_summaries(backend: Backend) -> None:
    """Rewrite the manifest as a deltatrain without inline summaries wrote it (side files only)."""
    manifest = json.loads(backend.get_bytes("manifest.json"))
    for entry in manifest["models"]:
        entry.pop("summary", None)
    backend.put_bytes("manifest.json", json.dumps(manifest).encode())


def edit_summary(backend: Backend, name: str, part: str, value: Any) -> None:
    """Overwrite one part of a model's inline summary in the manifest."""
    manifest = json.loads(backend.get_bytes("manifest.json"))
    entry = next(e for e in manifest["models"] if e["name"] == name)
    entry["summary"][part] = value
    backend.put_bytes("manifest.json", json.dumps(manifest).encode())


@dataclass
class StoreHarness:
    """One store under test, with what it runs on."""

    kind: str
    store: ModelStore
    recorder: RecordingBackend
    server: FakeStoreServer | None = None
    uploads: Path = field(default_factory=Path)

    def archive(self, name: str, seed: int = 0) -> Path:
        return write_archive(self.uploads, name, seed=seed)


@pytest.fixture
def http_server() -> Iterator[FakeStoreServer]:
    server = FakeStoreServer().start()
    yield server
    server.stop()


def _make_moto_conditional_writes_atomic() -> None:
    """Serialise moto's PutObject: moto checks If-Match and then writes, so two threaded
    requests can both pass the check; S3 itself evaluates the condition atomically."""
    import threading

    from moto.s3.responses import S3Response

    original = S3Response.put_object
    if getattr(original, "_deltatrain_locked", False):
        return
    lock = threading.Lock()

    def put_object(self: Any) -> Any:
        with lock:
            return original(self)

    put_object._deltatrain_locked = True  # type: ignore[attr-defined]
    S3Response.put_object = put_object  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    _make_moto_conditional_writes_atomic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(moto_endpoint: str) -> Any:
    """One boto3 client for the session (clients are slow to build), with dummy credentials."""
    import boto3

    return boto3.session.Session().client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="session")
def s3_bucket(s3_client: Any) -> str:
    bucket = "deltatrain-test"
    s3_client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy AWS credentials and no user config, so tests never touch a real account."""
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_url(s3_bucket: str, aws_env: None) -> str:
    """A fresh prefix in the test bucket."""
    return f"s3://{s3_bucket}/runs/{uuid.uuid4().hex}"


@pytest.fixture
def github_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHubReleases]:
    """A fake GitHub Releases API; GITHUB_API_URL and GITHUB_TOKEN point at it (as on a runner)."""
    fake = FakeGitHubReleases()
    fake.start()
    monkeypatch.setenv("GITHUB_API_URL", fake.api_url)
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
    yield fake
    fake.stop()


@pytest.fixture
def gitlab_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitLabPackages]:
    """A fake GitLab packages API; CI_API_V4_URL and GITLAB_TOKEN point at it."""
    fake = FakeGitLabPackages()
    fake.start()
    monkeypatch.setenv("CI_API_V4_URL", fake.api_url)
    monkeypatch.setenv("GITLAB_TOKEN", GITLAB_TOKEN)
    monkeypatch.delenv("GITLAB_CI", raising=False)
    yield fake
    fake.stop()


def forge_url(fake: FakeGitHubReleases | FakeGitLabPackages) -> str:
    """The store URL of a fake forge."""
    if isinstance(fake, FakeGitHubReleases):
        return f"github://{fake.repo}/models-test"
    return f"gitlab://{fake.origin.split('://', 1)[1]}/{fake.project_path}/deltatrain-models"


@pytest.fixture(params=["local", "http", "s3", "github", "gitlab"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> StoreHarness:
    """The same store behaviour, on each backend, opened through open_store."""
    kind: str = request.param
    server: FakeStoreServer | None = None
    if kind == "local":
        opened = open_store("store", base_dir=tmp_path)
    elif kind == "http":
        server = request.getfixturevalue("http_server")
        opened = open_store(server.url("/store/"), base_dir=tmp_path, token=None)
    elif kind in ("github", "gitlab"):
        fake = request.getfixturevalue(f"{kind}_fake")
        opened = open_store(forge_url(fake), base_dir=tmp_path)
    else:  # built directly to share one client; test_s3.py covers open_store("s3://...")
        bucket = request.getfixturevalue("s3_bucket")
        opened = ModelStore(
            S3Backend(request.getfixturevalue("s3_client"), bucket, f"runs/{uuid.uuid4().hex}")
        )
    recorder = RecordingBackend(opened.backend)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    return StoreHarness(kind, ModelStore(recorder, clock=FixedClock()), recorder, server, uploads)
