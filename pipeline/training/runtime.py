"""TensorFlow runtime setup shared by the NLU and dialogue trainers."""

from __future__ import annotations

import os
import random
import sys
from typing import Any, Callable, Mapping

#: A progress callback receives plain events such as
#: ``{"model": "nlu", "phase": "train", "epoch": 3, "epochs": 40, "loss": 0.41, "accuracy": 0.93}``.
Progress = Callable[[Mapping[str, Any]], None]

_configured = False


def configure_tensorflow(num_threads: int | None = None, seed: int = 42) -> Any:
    """Import TensorFlow quietly, set thread counts and seeds, return the module."""
    global _configured
    tf = _import_tensorflow()

    if not _configured:
        if num_threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(num_threads)
                tf.config.threading.set_inter_op_parallelism_threads(num_threads)
            except RuntimeError:
                pass  # already initialised by an earlier call in this process
        tf.get_logger().setLevel("ERROR")
        _configured = True
    set_seed(seed)
    return tf


def _import_tensorflow() -> Any:
    """Import TensorFlow quietly and without its eager Keras import (about 3 s saved).

    ``import tensorflow`` eagerly imports Keras' optimizers (and through them
    scikit-learn and SciPy) unless ``TF_USE_LEGACY_KERAS`` is set; our trainers
    need no Keras at import time. The variable is set only around the first
    import and restored right after, so ``tf.keras`` still resolves to Keras 3
    on first use (TensorFlow's lazy loader reads it when ``tf.keras`` is touched).
    """
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
    return sys.modules["tensorflow"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow for deterministic CPU training."""
    import numpy as np
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


def emit(progress: Progress | None, **event: Any) -> None:
    """Send one progress event when a callback is set."""
    if progress is not None:
        progress(event)
