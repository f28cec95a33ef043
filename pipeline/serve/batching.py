"""MicroBatcher: concurrent parse requests grouped into ``parse_batch`` calls.

A request joins the waiting list with the model it started on. One worker
takes what is waiting and parses it in a single background thread, so the
event loop keeps reading requests meanwhile. While a batch runs, new
requests wait, so under load batches grow by themselves and throughput
approaches the batch limit. When requests are concurrent (one arrived while
a batch was running, or the last batch had several) but fewer than a
chunk are waiting, the worker first waits up to ``max_wait`` seconds for
more; a lone request is parsed at once, and a chunk's worth is parsed
without waiting (a larger batch is no cheaper per message, and the idle
wait would cost throughput).

A micro-batch larger than ``chunk`` is sorted by text length and parsed
as several near-equal ``parse_batch`` calls, each answered as soon as it
is done: the pretrained language model pads a batch to its longest
message, and its activations for more than about eight messages no longer
fit in a core's cache, so a few similar-length chunks cost less per
message than one large batch (bench/RESULTS.md, "Serving").
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar


@dataclass
class _Item:
    model: Any
    text: str
    future: "asyncio.Future[dict[str, Any]]"
    concurrent: bool  # arrived while a batch was being parsed


T = TypeVar("T")
ParseBatch = Callable[[Any, Sequence[str]], list[dict[str, Any]]]


class ShuttingDown(RuntimeError):
    """The batcher stopped before this request was parsed."""


class MicroBatcher:
    """Groups concurrent ``submit`` calls into ``parse_batch(model, texts)`` calls."""

    def __init__(
        self, parse_batch: ParseBatch, *, max_batch: int = 32, max_wait: float = 0.002, chunk: int = 8,
    ) -> None:
        self.parse_batch = parse_batch
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)
        self.chunk = max(1, chunk)
        self.batches = 0
        self.messages = 0
        self.calls = 0
        self._parsing = False
        self._stopped = False
        self._last_size = 0
        self._waiting: collections.deque[_Item] = collections.deque()
        self._current: list[_Item] = []  # the micro-batch being parsed
        self._arrived: asyncio.Event | None = None  # something is waiting
        self._full: asyncio.Event | None = None  # enough are waiting to start without waiting for more
        self._task: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")

    async def start(self) -> None:
        """Start the worker on the running loop."""
        self._arrived, self._full = asyncio.Event(), asyncio.Event()
        self._task = asyncio.create_task(self._work(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop the worker and the thread; requests still waiting (or submitted later) fail with
        :class:`ShuttingDown`."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in [*self._current, *self._waiting]:
            if not item.future.done():
                item.future.set_exception(ShuttingDown("the server is shutting down"))
        self._waiting.clear()
        self._executor.shutdown(wait=True)

    async def submit(self, model: Any, text: str) -> dict[str, Any]:
        """The parse of ``text`` by ``model``, computed in some batch."""
        if self._arrived is None or self._full is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        if self._stopped:
            raise ShuttingDown("the server is shutting down")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Item(model, text, future, self._parsing))
        self._arrived.set()
        if len(self._waiting) >= self._enough:
            self._full.set()
        return await future

    def stats(self) -> dict[str, Any]:
        """Batches run, messages parsed, mean batch size, ``parse_batch`` calls."""
        mean = self.messages / self.batches if self.batches else 0.0
        return {"batches": self.batches, "messages": self.messages, "mean_batch_size": round(mean, 2),
                "parse_calls": self.calls, "max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1000,
                "chunk": self.chunk}

    async def _work(self) -> None:
        assert self._arrived is not None and self._full is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            if len(self._waiting) < self._enough and self.max_wait > 0 and self._concurrent():
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.max_wait):
                        await self._full.wait()
            items = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
            if not self._waiting:
                self._arrived.clear()
            live = [item for item in items if not item.future.done()]  # a timed-out request is dropped
            self._current = live
            self._last_size = len(live)
            if live:
                self.batches += 1
                self.messages += len(live)
            self._parsing = True
            try:
                for model, group in _by_model(live):
                    for part in split_by_length(group, self.chunk, key=_text_length):
                        await self._run(loop, model, part)
            finally:
                self._parsing = False

    @property
    def _enough(self) -> int:
        return min(self.chunk, self.max_batch)

    def _concurrent(self) -> bool:
        """Whether more requests are likely to arrive soon (worth waiting ``max_wait`` for)."""
        return self._last_size > 1 or any(item.concurrent for item in self._waiting)

    async def _run(self, loop: asyncio.AbstractEventLoop, model: Any, group: list[_Item]) -> None:
        self.calls += 1
        try:
            results = await loop.run_in_executor(self._executor, self.parse_batch, model, [i.text for i in group])
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request, which answers with JSON
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for item, result in zip(group, results):
            if not item.future.done():
                item.future.set_result(result)


def _text_length(item: _Item) -> int:
    return len(item.text)


def _by_model(items: list[_Item]) -> list[tuple[Any, list[_Item]]]:
    """Items grouped by the model they started on, in arrival order of each model's first item."""
    groups: dict[int, tuple[Any, list[_Item]]] = {}
    for item in items:
        groups.setdefault(id(item.model), (item.model, []))[1].append(item)
    return list(groups.values())


def split_by_length(items: Sequence[T], chunk: int, *, key: Callable[[T], int]) -> list[list[T]]:
    """Items sorted by ``key`` (a text length; shortest first) in near-equal parts of at most ``chunk``;
    one part, in the given order, when they fit in one."""
    if len(items) <= chunk:
        return [list(items)]
    ordered = sorted(items, key=key)
    parts = -(-len(ordered) // chunk)
    size, extra = divmod(len(ordered), parts)
    bounds = [0]
    for index in range(parts):
        bounds.append(bounds[-1] + size + (1 if index < extra else 0))
    return [ordered[a:b] for a, b in zip(bounds, bounds[1:])]
