"""Reloader: follow a model source, load new models in the background, swap atomically.

The served model is one attribute; a request takes it once when it arrives
and finishes on it, so a swap never disturbs a request in flight. A model
that fails to download, verify or load is never swapped in: the old one
keeps serving and the failure shows in ``/status``. A refused model (bad
sha256, unreadable archive) is not tried again until the source names
another one; a network error is retried on the next poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import DeltatrainError, ModelError, StoreIntegrityError

from .loaded import LoadedModel, load_model_archive
from .sources import Candidate, ModelSource

log = logging.getLogger("deltatrain.serve")


@dataclass(frozen=True)
class ReloadFailure:
    """Why a model was not swapped in."""

    model: str | None
    error: str
    at: str
    retry: bool  # False: refused until the source names another model

    def to_dict(self) -> dict[str, Any]:
        """JSON for ``/status``."""
        return {"model": self.model, "error": self.error, "at": self.at, "will_retry": self.retry}


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class Reloader:
    """Holds the served model and replaces it when the source names a new one."""

    def __init__(self, source: ModelSource, *, loader: Callable[..., LoadedModel] = load_model_archive) -> None:
        self.source = source
        self.current: LoadedModel | None = None
        self.last_error: ReloadFailure | None = None
        self.last_poll: str | None = None
        self.swaps = 0
        self._loader = loader
        self._refused: set[str] = set()
        self._lock = threading.Lock()  # one check at a time (the poller and /status never race)

    def check_once(self) -> bool:
        """Poll, and load + swap when the source names a model not served yet; True when swapped.

        Blocking (downloads and loads): run it in a thread. Never raises for
        store or model errors: they are recorded in :attr:`last_error`.
        """
        with self._lock:
            self.last_poll = _now()
            candidate: Candidate | None = None
            try:
                candidate = self.source.poll()
                if candidate is None or (self.current is not None and candidate.key == self.current.key):
                    return False
                if candidate.key in self._refused:
                    return False
                model = self._load(candidate)
            except (ModelError, StoreIntegrityError) as exc:  # this model is broken: do not retry it
                if candidate is not None:
                    self._refused.add(candidate.key)
                self._fail(candidate, exc, retry=False)
                return False
            except DeltatrainError as exc:  # store unreachable etc.: try again next poll
                self.source.reset()
                self._fail(candidate, exc, retry=True)
                return False
            previous = self.current
            self.current = model  # the swap: one reference assignment
            self.swaps += 1
            self.last_error = None
            log.info("serving model %s (%s, loaded in %.2fs)%s", model.name, model.source, model.load_seconds,
                     f", replacing {previous.name}" if previous else "")
            return True

    async def follow(self, poll_seconds: float, stop: asyncio.Event) -> None:
        """Check every ``poll_seconds`` until ``stop`` is set (loads run in a thread)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=poll_seconds)
                return
            except asyncio.TimeoutError:
                pass
            await asyncio.to_thread(self.check_once)

    def status(self) -> dict[str, Any]:
        """What ``/status`` reports about reloading."""
        return {
            "source": self.source.describe(),
            "last_poll": self.last_poll,
            "swaps": self.swaps,
            "last_reload_error": self.last_error.to_dict() if self.last_error else None,
        }

    def _load(self, candidate: Candidate) -> LoadedModel:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="deltatrain-fetch-") as tmp:
            fetched = self.source.fetch(candidate, Path(tmp))
            model = self._loader(fetched.path, source=self.source.describe(), metrics=fetched.metrics,
                                 sha256=fetched.sha256)
        seconds = time.perf_counter() - started
        model = dataclasses.replace(model, key=candidate.key, fetch_seconds=seconds - model.load_seconds)
        log.info("model %s fetched and loaded in %.2fs", model.name, seconds)
        return model

    def _fail(self, candidate: Candidate | None, exc: DeltatrainError, *, retry: bool) -> None:
        name = candidate.name if candidate else None
        self.last_error = ReloadFailure(name, exc.render(), _now(), retry)
        serving = self.current.name if self.current else "nothing"
        log.error("model %s not loaded (still serving %s): %s", name or "?", serving, exc.render().replace("\n", " "))
