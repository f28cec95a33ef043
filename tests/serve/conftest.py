"""A real deltatrain server on 127.0.0.1 (port 0) in a thread, over models the real CI step published."""

from __future__ import annotations

import asyncio
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import git
import pytest

from pipeline.cli import main
from pipeline.serve.loaded import LoadedModel, load_model_archive
from pipeline.serve.reloader import Reloader
from pipeline.serve.server import serve_app
from pipeline.serve.settings import ServeSettings
from pipeline.serve.sources import ModelSource
from tests.helpers import copy_into_git_repo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "assistant"
TINY = ["--epochs", "2"]


@dataclass
class RunningServer:
    """A server running in a background thread with its own event loop."""

    url: str
    reloader: Reloader
    loop: asyncio.AbstractEventLoop
    stop_event: asyncio.Event
    thread: threading.Thread

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server did not shut down"


def start_server(source: ModelSource, settings: ServeSettings | None = None, *,
                 loader: Callable[..., LoadedModel] = load_model_archive) -> RunningServer:
    """Load the source's model and serve it on 127.0.0.1, port 0, polling only when asked."""
    settings = replace(settings or ServeSettings(poll_seconds=0), host="127.0.0.1", port=0)
    reloader = Reloader(source, loader=loader)
    reloader.check_once()
    ready = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        stop = asyncio.Event()
        box["stop"] = stop

        def on_ready(url: str) -> None:
            box["url"] = url
            ready.set()

        try:
            loop.run_until_complete(serve_app(settings, reloader, stop, on_ready=on_ready))
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="deltatrain-serve-test", daemon=True)
    thread.start()
    assert ready.wait(30), "the server did not start"
    return RunningServer(str(box["url"]), reloader, box["loop"], box["stop"], thread)  # type: ignore[arg-type]


def commit_change(work: Path, old: str, new: str, *, file: str = "domain.yml") -> None:
    """Edit a file of the assistant and commit it."""
    path = work / file
    path.write_text(path.read_text().replace(old, new))
    repo = git.Repo(work)
    repo.git.add(A=True)
    repo.index.commit(f"edit {file}")


def run_ci(work: Path, *extra: str) -> None:
    """The real CI step (tiny epochs) publishing into the assistant's local store."""
    assert main(["ci", "-C", str(work), *TINY, *extra], environ={}) == 0


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repo of the example assistant after one CI run: its store holds one gated model."""
    work = tmp_path_factory.mktemp("serve") / "assistant"
    copy_into_git_repo(EXAMPLE, work)
    run_ci(work)
    return work


@pytest.fixture
def assistant(published: Path, tmp_path: Path) -> Path:
    """A private copy of the published assistant (repo + store) for one test."""
    work = tmp_path / "assistant"
    shutil.copytree(published, work)
    return work


def store_dir(work: Path) -> Path:
    """The assistant's local model store."""
    return work / ".deltatrain" / "store"


@pytest.fixture
def archive(published: Path) -> Path:
    """The published model's archive file."""
    manifest_models = sorted((store_dir(published) / "models").glob("*/model.tar.gz"))
    assert len(manifest_models) == 1
    return manifest_models[0]


@pytest.fixture
def server_factory() -> Iterator[list[RunningServer]]:
    """Servers started in a test, stopped after it."""
    servers: list[RunningServer] = []
    yield servers
    for server in servers:
        server.stop()
