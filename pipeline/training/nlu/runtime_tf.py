"""TensorFlow for NLU training, configured by :func:`pipeline.training.runtime.configure_tensorflow`."""

from __future__ import annotations

import os
from typing import Any

from pipeline.training.runtime import configure_tensorflow

#: Threads for TensorFlow's intra- and inter-op pools (the CI machines have 2 cores).
NUM_THREADS = min(os.cpu_count() or 2, 4)


def import_tensorflow(seed: int | None = None) -> Any:
    """The ``tensorflow`` module, configured once (threads, quiet logs), seeded when asked."""
    return configure_tensorflow(NUM_THREADS, seed if seed is not None else 42)
