"""MicroBatcher: concurrent requests grouped into parse_batch calls, per model, errors handed back."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Sequence

import pytest

from pipeline.serve.batching import MicroBatcher


class Recorder:
    """A parse_batch that records each call and takes ``delay`` seconds (like a real model)."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.threads: set[str] = set()

    def __call__(self, model: Any, texts: Sequence[str]) -> list[dict[str, Any]]:
        self.threads.add(threading.current_thread().name)
        self.calls.append((model, list(texts)))
        if self.fail_on in texts:
            raise ValueError(f"cannot parse {self.fail_on!r}")
        time.sleep(self.delay)
        return [{"text": t, "model": model} for t in texts]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_requests_share_batches_up_to_the_limit() -> None:
    recorder = Recorder(delay=0.02)

    async def main() -> list[dict[str, Any]]:
        batcher = MicroBatcher(recorder, max_batch=4, max_wait=0.01)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit("m", f"t{i}") for i in range(10)))
        finally:
            await batcher.stop()

    results = _run(main())
    assert [r["text"] for r in results] == [f"t{i}" for i in range(10)]
    sizes = [len(texts) for _, texts in recorder.calls]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) == 3
    assert all(name.startswith("parse") for name in recorder.threads)  # off the event loop


def test_a_lone_request_waits_at_most_max_wait() -> None:
    recorder = Recorder()

    async def main() -> float:
        batcher = MicroBatcher(recorder, max_batch=32, max_wait=0.05)
        await batcher.start()
        try:
            started = time.perf_counter()
            await batcher.submit("m", "alone")
            return time.perf_counter() - started
        finally:
            await batcher.stop()

    elapsed = _run(main())
    assert 0.04 <= elapsed < 1.0
    assert recorder.calls == [("m", ["alone"])]


def test_requests_finish_on_the_model_they_started_with() -> None:
    recorder = Recorder()

    async def main() -> list[dict[str, Any]]:
        batcher = MicroBatcher(recorder, max_batch=8, max_wait=0.01)
        await batcher.start()
        try:
            return await asyncio.gather(batcher.submit("old", "a"), batcher.submit("new", "b"),
                                        batcher.submit("old", "c"))
        finally:
            await batcher.stop()

    results = _run(main())
    assert [r["model"] for r in results] == ["old", "new", "old"]
    assert sorted(recorder.calls) == [("new", ["b"]), ("old", ["a", "c"])]


def test_a_failing_batch_fails_its_requests_and_the_next_batch_works() -> None:
    recorder = Recorder(fail_on="boom")

    async def main() -> tuple[list[Any], dict[str, Any]]:
        batcher = MicroBatcher(recorder, max_batch=8, max_wait=0.01)
        await batcher.start()
        try:
            failed = await asyncio.gather(batcher.submit("m", "boom"), batcher.submit("m", "x"),
                                          return_exceptions=True)
            return failed, await batcher.submit("m", "after")
        finally:
            await batcher.stop()

    failed, after = _run(main())
    assert all(isinstance(f, ValueError) for f in failed)
    assert after == {"text": "after", "model": "m"}


def test_submit_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _run(MicroBatcher(Recorder()).submit("m", "x"))
