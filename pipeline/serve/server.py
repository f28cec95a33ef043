"""Run the application: bind, follow the source, stop gracefully on SIGTERM/SIGINT.

Shutdown stops accepting connections, lets requests in flight finish (up to
``shutdown_timeout``), then stops the batcher. ``workers > 1`` forks that
many processes sharing the port (SO_REUSEPORT); each loads and follows the
model on its own, and conversations live in the process that served them
(so use one worker, or sticky routing, for ``/conversations``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from typing import Callable

from aiohttp import web

from pipeline.errors import ModelError

from .app import AccessLogger, build_app
from .reloader import Reloader
from .settings import ServeSettings
from .sources import ModelSource

log = logging.getLogger("deltatrain.serve")
access_log = logging.getLogger("deltatrain.serve.access")


def configure_logging(stream: object = None) -> None:
    """Server log and access log as lines on stderr (the access log is JSON per request)."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("deltatrain.serve")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def load_first(source: ModelSource, *, require_model: bool) -> Reloader:
    """A reloader with the source's current model loaded; raises when ``require_model`` and it cannot load."""
    reloader = Reloader(source)
    reloader.check_once()
    if reloader.current is None:
        error = reloader.last_error.error if reloader.last_error else "no model found"
        if require_model:
            raise ModelError(f"cannot serve: {error}")
        log.warning("no model yet (%s); answering 409 until one loads", error.replace("\n", " "))
    return reloader


async def serve_app(
    settings: ServeSettings, reloader: Reloader, stop: asyncio.Event, *, on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until ``stop`` is set, then shut down gracefully."""
    app = build_app(settings, reloader)
    runner = web.AppRunner(app, access_log_class=AccessLogger, access_log=access_log,
                           shutdown_timeout=settings.shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=settings.workers > 1 or None)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    log.info("serving on %s (pid %d, model %s, source %s)", url, os.getpid(),
             reloader.current.name if reloader.current else None, reloader.source.describe())
    if on_ready is not None:
        on_ready(url)
    follower = asyncio.create_task(reloader.follow(settings.poll_seconds, stop)) if settings.poll_seconds > 0 else None
    try:
        await stop.wait()
    finally:
        log.info("shutting down: finishing requests in flight")
        if follower is not None:
            follower.cancel()
        await runner.cleanup()
        log.info("stopped")


def run_server(settings: ServeSettings, make_source: Callable[[], ModelSource], *, require_model: bool) -> None:
    """Load the model, serve until SIGTERM/SIGINT (the CLI's entry); forks workers when asked."""
    if settings.workers > 1:
        _run_workers(settings, make_source, require_model=require_model)
        return
    _serve_until_signal(settings, load_first(make_source(), require_model=require_model))


def _serve_until_signal(settings: ServeSettings, reloader: Reloader) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_app(settings, reloader, stop, on_ready=_announce)

    asyncio.run(main())


def _announce(url: str) -> None:
    # one write of the whole line: workers share stderr, and print() writes the newline separately
    sys.stderr.write(f"deltatrain serve: listening on {url}\n")
    sys.stderr.flush()


def _run_workers(settings: ServeSettings, make_source: Callable[[], ModelSource], *, require_model: bool) -> None:
    context = multiprocessing.get_context("fork")  # the source factory need not be picklable
    children = [
        context.Process(target=_worker, args=(settings, make_source, require_model), name=f"serve-{i}")
        for i in range(settings.workers)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    failed = [f"{child.name}: exit code {child.exitcode}" for child in children if child.exitcode]
    if failed:
        raise ModelError("a server worker failed (" + ", ".join(failed) + ")", hint="see the log above")


def _worker(settings: ServeSettings, make_source: Callable[[], ModelSource], require_model: bool) -> None:
    """One forked worker: its own model, reloader and batcher, bound with SO_REUSEPORT."""
    configure_logging()
    _serve_until_signal(settings, load_first(make_source(), require_model=require_model))
