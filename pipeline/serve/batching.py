"""MicroBatcher: concurrent parse requests grouped into ``parse_batch`` calls.

A request joins a queue with the model it started on. One worker takes the
first waiting request, then everything else that arrives within
``max_wait`` seconds (or is already waiting), up to ``max_batch``, and runs
one ``parse_batch`` per model in a single background thread. While a batch
runs, new requests queue up, so under load batches grow by themselves and
throughput approaches the batch limit; alone, a request waits at most
``max_wait``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass
class _Item:
    model: Any
    text: str
    future: "asyncio.Future[dict[str, Any]]"


ParseBatch = Callable[[Any, Sequence[str]], list[dict[str, Any]]]


class MicroBatcher:
    """Groups concurrent ``submit`` calls into ``parse_batch(model, texts)`` calls."""

    def __init__(self, parse_batch: ParseBatch, *, max_batch: int = 32, max_wait: float = 0.002) -> None:
        self.parse_batch = parse_batch
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)
        self.batches = 0
        self.messages = 0
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")

    async def start(self) -> None:
        """Start the worker on the running loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._work(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop the worker (after the requests in flight were answered) and the thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, model: Any, text: str) -> dict[str, Any]:
        """The parse of ``text`` by ``model``, computed in some batch."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(model, text, future))
        return await future

    def stats(self) -> dict[str, Any]:
        """Batches run, messages parsed, mean batch size."""
        mean = self.messages / self.batches if self.batches else 0.0
        return {"batches": self.batches, "messages": self.messages, "mean_batch_size": round(mean, 2),
                "max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1000}

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [item for item in items if not item.future.done()]  # a timed-out request is dropped
            for model, group in _by_model(live):
                await self._run(loop, model, group)

    async def _run(self, loop: asyncio.AbstractEventLoop, model: Any, group: list[_Item]) -> None:
        try:
            results = await loop.run_in_executor(self._executor, self.parse_batch, model, [i.text for i in group])
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request, which answers with JSON
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self.batches += 1
        self.messages += len(group)
        for item, result in zip(group, results):
            if not item.future.done():
                item.future.set_result(result)


def _by_model(items: list[_Item]) -> list[tuple[Any, list[_Item]]]:
    """Items grouped by the model they started on, in arrival order of each model's first item."""
    groups: dict[int, tuple[Any, list[_Item]]] = {}
    for item in items:
        groups.setdefault(id(item.model), (item.model, []))[1].append(item)
    return list(groups.values())
