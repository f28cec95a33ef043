"""DIET training in TensorFlow: the compiled training step, joint loss and Adam.

Only the trainer imports this module (it imports TensorFlow). Weights are
plain ``tf.Variable`` objects named as in :mod:`.architecture`, whose
:func:`~.architecture.forward` is the network, run here with TensorFlow ops
(:class:`pipeline.training.ops.TensorFlowOps`); predictions for ``parse`` run
the same forward pass with NumPy (:mod:`.inference`).

One ``tf.function`` with fully dynamic shapes is traced once per model: the
batch carries, per featurizer, flat feature ids with their flat positions
(``example * length + position``, sorted), so there is no padded feature
tensor and no retrace for other batch sizes or lengths. Weights are updated by
the shared :class:`pipeline.training.optim.Adam` (lazy rows for embedding tables).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from pipeline.training.ops import TensorFlowOps
from pipeline.training.optim import Adam

from .architecture import NetworkConfig, TrainingOptions, forward
from .runtime_tf import import_tensorflow

tf = import_tensorflow()

__all__ = ["Batch", "DietNetwork", "TrainingOptions"]


@dataclass
class Batch:
    """NumPy arrays of one training batch (see :func:`pipeline.training.nlu.trainer.make_batch`)."""

    #: per featurizer: (unit feature ids, unit of each id (sorted), unit at each token,
    #: flat position ``example * length + position`` of each token unit (sorted))
    features: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]
    mask: np.ndarray  # [B, L] float32, 1 for the sentence slot and real tokens
    dense: np.ndarray  # [B, L, F] float32 pretrained features (F = 0 without them)
    intents: np.ndarray  # [B] int32
    tags: np.ndarray  # [B, L-1] int32
    roles: np.ndarray
    groups: np.ndarray


class DietNetwork:
    """Variables and the compiled training and prediction steps (optionally anchored to ``weights``)."""

    def __init__(
        self,
        config: NetworkConfig,
        weights: Mapping[str, np.ndarray],
        options: TrainingOptions,
        anchor_pull: float = 0.0,
        unanchored: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.options = options
        self.names = list(config.weight_shapes())
        self.variables = {name: tf.Variable(weights[name], name=name.replace("/", "_")) for name in self.names}
        # finetuning: after every step, the shared (non-embedding) weights are pulled this
        # fraction of the way back to ``weights`` (decoupled L2-SP); embedding rows move freely
        self.anchor_pull = anchor_pull
        # ``unanchored``: weights a label-growing finetune must move freely (their new rows start untrained)
        anchored = [n for n in self.names if not n.startswith("embed/") and n not in unanchored] if anchor_pull > 0 else []
        self._anchors = {n: tf.constant(weights[n]) for n in anchored}
        self._adam = Adam(tf, [self.variables[n] for n in self.names])
        nf = len(config.feature_sizes)
        vector = tf.TensorSpec([None], tf.int32)
        features_spec = tuple((vector, vector, vector, vector) for _ in range(nf))
        matrix = tf.TensorSpec([None, None], tf.int32)
        # autograph=False: all control flow is Python over the static config, and skipping
        # autograph's source transformation saves seconds of tracing per model
        self.train_step = tf.function(
            self._train_step,
            autograph=False,
            input_signature=[
                features_spec,
                tf.TensorSpec([None, None], tf.float32),
                tf.TensorSpec([None, None, None], tf.float32),
                tf.TensorSpec([None], tf.int32),
                matrix,
                matrix,
                matrix,
                tf.TensorSpec([], tf.float32),
                tf.TensorSpec([2], tf.int32),
            ],
        )
        self.predict_step = tf.function(
            self._predict_step,
            autograph=False,
            input_signature=[
                features_spec,
                tf.TensorSpec([None, None], tf.float32),
                tf.TensorSpec([None, None, None], tf.float32),
            ],
        )

    def start_tracing(self) -> Callable[[], None]:
        """Trace the training step in a background thread; return the function that waits for it.

        Tracing is seconds of Python work; the trainer featurizes the examples meanwhile (the
        pretrained features run in NumPy and TensorFlow kernels, which release the GIL).
        """
        failure: list[BaseException] = []

        def trace() -> None:
            try:
                self.train_step.get_concrete_function()
            except BaseException as exc:  # re-raised in the caller's thread by wait()
                failure.append(exc)

        thread = threading.Thread(target=trace, name="deltatrain-trace", daemon=True)
        thread.start()

        def wait() -> None:
            thread.join()
            if failure:
                raise failure[0]

        return wait

    def get_weights(self) -> dict[str, np.ndarray]:
        return {name: var.numpy() for name, var in self.variables.items()}

    # --------------------------------------------------------------------- loss
    def _token_ce(self, logits: Any, targets: Any, token_mask: Any) -> Any:
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        return tf.reduce_sum(ce * token_mask) / tf.maximum(tf.reduce_sum(token_mask), 1.0)

    def _loss(
        self, outputs: Mapping[str, Any], mask: Any, intents: Any, tags: Any, roles: Any, groups: Any
    ) -> tuple[Any, Any]:
        cfg = self.config
        loss = tf.constant(0.0)
        accuracy = tf.constant(0.0)
        if cfg.intent_classification:
            sims = outputs["similarities"]
            loss += tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=intents, logits=sims))
            if self.options.constrain_similarities:
                onehot = tf.one_hot(intents, cfg.num_intents)
                sig = tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=sims)
                positive = tf.reduce_sum(sig * onehot, axis=1)
                negative = tf.reduce_sum(sig * (1.0 - onehot), axis=1) / max(cfg.num_intents - 1, 1)
                loss += tf.reduce_mean(positive + negative)
            predicted = tf.argmax(sims, axis=1, output_type=tf.int32)
            accuracy = tf.reduce_mean(tf.cast(tf.equal(predicted, intents), tf.float32))
        if cfg.entity_recognition:
            token_mask = mask[:, 1:]
            loss += self._token_ce(outputs["emissions"], tags, token_mask)
            if cfg.num_roles:
                loss += self._token_ce(outputs["roles"], roles, token_mask)
            if cfg.num_groups:
                loss += self._token_ce(outputs["groups"], groups, token_mask)
        return loss, accuracy

    # -------------------------------------------------------------------- steps
    def _train_step(
        self,
        features: Any,
        mask: Any,
        dense: Any,
        intents: Any,
        tags: Any,
        roles: Any,
        groups: Any,
        learning_rate: Any,
        seed: Any,
    ) -> tuple[Any, Any]:
        variables = [self.variables[n] for n in self.names]
        with tf.GradientTape() as tape:
            outputs = forward(
                TensorFlowOps(tf, seed), self.variables, self.config, features, mask, dense, self.options
            )
            loss, accuracy = self._loss(outputs, mask, intents, tags, roles, groups)
        grads = tape.gradient(loss, variables)
        self._adam.apply(grads, learning_rate)
        for name, anchor in self._anchors.items():
            var = self.variables[name]
            var.assign(anchor + (1.0 - self.anchor_pull) * (var - anchor))
        return loss, accuracy

    def _predict_step(self, features: Any, mask: Any, dense: Any) -> dict[str, Any]:
        # no seed: no dropout
        return forward(TensorFlowOps(tf), self.variables, self.config, features, mask, dense, self.options)
