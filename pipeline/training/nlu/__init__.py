"""The NLU model: sparse and pretrained featurizers + a DIET-style joint intent/entity network.

Importing this package does not import TensorFlow: ``NluModel`` (load, parse,
save) and ``check_finetune_compatible`` are NumPy/JSON only; ``train_nlu``
and ``finetune_nlu`` import the trainer (and TensorFlow) when called.

Modules::

    layout        saved-file names (constants)
    settings      config.pipeline -> NluSettings (Rasa component names/options)
    tokenizer     whitespace/punctuation tokens with offsets
    features      append-only vocabularies and sparse featurizers (preprocessing)
    pretrained    all-MiniLM-L6-v2 in NumPy: dense token/sentence features (LanguageModelFeaturizer)
    pretrained_tf the same forward pass in TensorFlow, for featurizing training data
    labels        intent/entity/role/group label maps, BILOU/BIO tagging
    architecture  weight names, shapes, initialisation, growth and THE forward pass
                  (encode/heads over pipeline.training.ops: NumPy or TensorFlow)
    selector      ResponseSelector (retrieval intents): options, trained selectors, parse output
    inference     the forward pass run by NumPy on one message, Viterbi (used by parse)
    network       the forward pass run by TensorFlow, joint loss, compiled training step
                  (Adam and the batch-size ramp: pipeline.training.optim, shared with TED)
    trainer       train / finetune loops
    model         NluModel: parse, parse_batch, save, load
    compat        finetune compatibility check (JSON only)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pipeline.data.model import Config, NluData
from pipeline.training.runtime import Progress

if TYPE_CHECKING:
    from .compat import check_finetune_compatible
    from .model import NluModel

#: Loaded on first use (PEP 562): config validation imports :mod:`.settings` with the core
#: install, which has no NumPy.
_EXPORTS = {"NluModel": "model", "check_finetune_compatible": "compat"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

__all__ = ["NluModel", "train_nlu", "finetune_nlu", "check_finetune_compatible"]


def train_nlu(
    data: NluData,
    config: Config,
    *,
    progress: Progress | None = None,
    seed: int = 42,
    responses: Mapping[str, Any] | None = None,
) -> NluModel:
    """Train an NLU model from scratch (imports TensorFlow); ``responses``: the domain's, for
    the ResponseSelector's answers."""
    from .trainer import train_nlu as _train  # noqa: PLC0415 - TensorFlow only when training

    return _train(data, config, progress=progress, seed=seed, responses=responses)


def finetune_nlu(
    previous_dir: Path,
    data: NluData,
    config: Config,
    *,
    epoch_fraction: float,
    progress: Progress | None = None,
    seed: int = 42,
    responses: Mapping[str, Any] | None = None,
) -> NluModel:
    """Continue training a saved model on updated data; raises FinetuneRefused (imports TensorFlow)."""
    from .trainer import finetune_nlu as _finetune  # noqa: PLC0415

    return _finetune(
        previous_dir, data, config, epoch_fraction=epoch_fraction, progress=progress, seed=seed, responses=responses
    )
