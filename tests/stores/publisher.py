"""Worker for the concurrency tests: a separate OS process publishing one model per round.

Started with the ``spawn`` start method, so it shares nothing with the test process but
the store URL, the barriers and an error queue.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from pipeline.stores import open_store

BARRIER_TIMEOUT = 60.0


def publish_rounds(
    url: str,
    s3_endpoint_url: str | None,
    worker: int,
    rounds: int,
    archive: str,
    keep: int,
    start: Any,
    done: Any,
    errors: Any,
) -> None:
    """Each round: wait for the start barrier, publish ``r<round>-w<worker>``, wait at ``done``."""
    store = open_store(url, base_dir=Path(archive).parent, s3_endpoint_url=s3_endpoint_url)
    for index in range(rounds):
        start.wait(BARRIER_TIMEOUT)
        name = model_name(index, worker)
        try:
            store.publish(
                Path(archive),
                name=name,
                fingerprint={"sections": {"nlu": name}},
                metadata={"name": name, "finetunes_in_a_row": 0},
                metrics={"intent_f1": 0.9},
                keep=keep,
            )
        except Exception:  # reported to the test, which fails with it
            errors.put(f"round {index}, worker {worker}:\n{traceback.format_exc()}")
        done.wait(BARRIER_TIMEOUT)


def model_name(index: int, worker: int) -> str:
    """The name worker ``worker`` publishes in round ``index``."""
    return f"r{index:02d}-w{worker}"
