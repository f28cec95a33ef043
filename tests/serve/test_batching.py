"""MicroBatcher: concurrent requests grouped into parse_batch calls, per model, errors handed back."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any, Sequence

import pytest

from pipeline.serve.app import _parse
from pipeline.serve.batching import MicroBatcher, ShuttingDown, split_by_length
from pipeline.serve.responses import ApiError


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


def test_a_lone_request_is_parsed_at_once() -> None:
    recorder = Recorder()

    async def main() -> float:
        batcher = MicroBatcher(recorder, max_batch=32, max_wait=0.5)
        await batcher.start()
        try:
            started = time.perf_counter()
            await batcher.submit("m", "alone")
            return time.perf_counter() - started
        finally:
            await batcher.stop()

    elapsed = _run(main())
    assert elapsed < 0.25  # no reason to wait for company: nothing else was in flight
    assert recorder.calls == [("m", ["alone"])]


def test_concurrent_requests_wait_at_most_max_wait_for_company() -> None:
    recorder = Recorder(delay=0.05)

    async def main() -> dict[str, float]:
        batcher = MicroBatcher(recorder, max_batch=32, max_wait=0.3)
        await batcher.start()
        done: dict[str, float] = {}
        started = time.perf_counter()

        async def send(text: str, after: float) -> None:
            await asyncio.sleep(after)
            await batcher.submit("m", text)
            done[text] = time.perf_counter() - started

        try:
            # a runs alone; b arrives while a is parsed, so the next batch waits (up to 0.3 s) for c
            await asyncio.gather(send("a", 0), send("b", 0.01), send("c", 0.08))
        finally:
            await batcher.stop()
        return done

    done = _run(main())
    assert recorder.calls == [("m", ["a"]), ("m", ["b", "c"])]
    assert 0.3 + 0.05 <= done["b"] - done["a"] < 2.0  # waited the full max_wait after a's batch, then parsed


@pytest.mark.parametrize(("max_batch", "chunk"), [(2, 8), (32, 2)], ids=["max-batch-reached", "a-chunk-reached"])
def test_a_full_batch_does_not_wait(max_batch: int, chunk: int) -> None:
    recorder = Recorder(delay=0.05)

    async def main() -> float:
        batcher = MicroBatcher(recorder, max_batch=max_batch, max_wait=5.0, chunk=chunk)
        await batcher.start()
        started = time.perf_counter()

        async def send(text: str, after: float) -> None:
            await asyncio.sleep(after)
            await batcher.submit("m", text)

        try:
            await asyncio.gather(send("a", 0), send("b", 0.01), send("c", 0.01))
        finally:
            await batcher.stop()
        return time.perf_counter() - started

    assert _run(main()) < 2.0
    assert recorder.calls == [("m", ["a"]), ("m", ["b", "c"])]


def test_a_large_batch_runs_as_length_sorted_chunks_each_answered_when_done() -> None:
    recorder = Recorder(delay=0.05)
    texts = ["x" * n for n in (9, 1, 7, 3, 10, 2, 8, 4, 6, 5)]

    async def main() -> tuple[list[dict[str, Any]], dict[str, float]]:
        batcher = MicroBatcher(recorder, max_batch=32, max_wait=0.01, chunk=4)
        await batcher.start()
        answered: dict[str, float] = {}
        started = time.perf_counter()

        async def send(text: str) -> dict[str, Any]:
            result = await batcher.submit("m", text)
            answered[text] = time.perf_counter() - started
            return result

        try:
            return await asyncio.gather(*(send(t) for t in texts)), answered
        finally:
            await batcher.stop()

    results, answered = _run(main())
    assert [r["text"] for r in results] == texts  # every request gets its own answer back
    assert [[len(t) for t in call] for _, call in recorder.calls] == [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10]]
    assert batcher_stats_ok(recorder)
    shortest, longest = answered["x"], answered["x" * 10]
    assert longest - shortest >= 0.09  # the first chunk was answered two parses before the last one


def batcher_stats_ok(recorder: Recorder) -> bool:
    """Every call ran in the batcher's one parse thread."""
    return len(recorder.threads) == 1 and next(iter(recorder.threads)).startswith("parse")


@pytest.mark.parametrize(
    ("lengths", "chunk", "expected"),
    [
        pytest.param([3, 1, 2], 8, [[3, 1, 2]], id="fits-in-one-keeps-arrival-order"),
        pytest.param([5, 1, 4, 2, 3], 2, [[1, 2], [3, 4], [5]], id="sorted-near-equal"),
        pytest.param(list(range(9, 0, -1)), 8, [[1, 2, 3, 4, 5], [6, 7, 8, 9]], id="nine-is-five-and-four"),
        pytest.param([1] * 16, 8, [[1] * 8, [1] * 8], id="exact-multiple"),
        pytest.param([], 8, [[]], id="empty"),
    ],
)
def test_split_by_length(lengths: list[int], chunk: int, expected: list[list[int]]) -> None:
    parts = split_by_length(["x" * n for n in lengths], chunk, key=len)
    assert [[len(t) for t in part] for part in parts] == expected


def test_stop_fails_requests_still_waiting() -> None:
    recorder = Recorder(delay=0.05)

    async def main() -> list[Any]:
        batcher = MicroBatcher(recorder, max_batch=32, max_wait=5.0)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit("m", "a"))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.submit("m", "b"))  # concurrent: waits up to 5 s for company
        await asyncio.sleep(0.2)
        await batcher.stop()
        return await asyncio.gather(first, second, return_exceptions=True)

    first, second = _run(main())
    assert first == {"text": "a", "model": "m"}
    assert isinstance(second, ShuttingDown)


def test_requests_finish_on_the_model_they_started_with() -> None:
    recorder = Recorder()

    async def main() -> list[dict[str, Any]]:
        batcher = MicroBatcher(recorder, max_batch=8, max_wait=0.01)
        await batcher.start()
        try:
            return list(await asyncio.gather(batcher.submit("old", "a"), batcher.submit("new", "b"),
                                             batcher.submit("old", "c")))
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
            return list(failed), await batcher.submit("m", "after")
        finally:
            await batcher.stop()

    failed, after = _run(main())
    assert all(isinstance(f, ValueError) for f in failed)
    assert after == {"text": "after", "model": "m"}


def test_submit_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _run(MicroBatcher(Recorder()).submit("m", "x"))


def test_stop_fails_the_rest_of_the_batch_being_parsed() -> None:
    recorder = Recorder(delay=0.2)

    async def main() -> list[Any]:
        batcher = MicroBatcher(recorder, max_batch=32, max_wait=0.0, chunk=1)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit("m", text)) for text in ("a", "bb")]
        await asyncio.sleep(0.05)  # one micro-batch of two chunks; the first is being parsed
        await batcher.stop()
        return await asyncio.gather(*pending, return_exceptions=True)

    results = _run(main())
    assert all(isinstance(result, ShuttingDown) for result in results), results
    assert recorder.calls == [("m", ["a"])]  # the second chunk never started


def test_a_request_after_stop_is_answered_503() -> None:
    async def main() -> ApiError:
        batcher = MicroBatcher(Recorder())
        await batcher.start()
        await batcher.stop()
        with pytest.raises(ShuttingDown):
            await batcher.submit("m", "late")
        state = SimpleNamespace(batcher=batcher)
        with pytest.raises(ApiError) as caught:
            await _parse(state, "m", "late", None)  # type: ignore[arg-type]
        return caught.value

    error = _run(main())
    assert error.status == 503 and error.body()["reason"] == "ServiceUnavailable"
