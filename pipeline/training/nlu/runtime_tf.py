"""Import TensorFlow for NLU training, without the eager Keras import (about 3 s).

``import tensorflow`` eagerly imports Keras' optimizers (and through them
scikit-learn and SciPy) unless ``TF_USE_LEGACY_KERAS`` is set; the NLU
trainer uses no Keras. The variable is set only around the first import and
restored right after, so ``tf.keras`` still resolves to Keras 3 on first use
(TensorFlow's lazy loader reads the variable when ``tf.keras`` is touched).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pipeline.training.runtime import configure_tensorflow

#: Threads for TensorFlow's intra- and inter-op pools (the CI machines have 2 cores).
NUM_THREADS = min(os.cpu_count() or 2, 4)


def import_tensorflow(seed: int | None = None) -> Any:
    """The ``tensorflow`` module, configured once (threads, quiet logs), seeded when asked."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        previous = os.environ.get("TF_USE_LEGACY_KERAS")
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        try:
            import tensorflow  # noqa: F401, PLC0415 - deliberately lazy
        finally:
            if previous is None:
                del os.environ["TF_USE_LEGACY_KERAS"]
            else:
                os.environ["TF_USE_LEGACY_KERAS"] = previous
    return configure_tensorflow(NUM_THREADS, seed if seed is not None else 42)
