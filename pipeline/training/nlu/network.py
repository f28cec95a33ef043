"""The DIET-style network in TensorFlow: forward pass, joint loss, Adam step.

Only the trainer imports this module (it imports TensorFlow). Weights are
plain ``tf.Variable`` objects named as in :mod:`.architecture`; predictions
for ``parse`` are made by :mod:`.inference` from the same arrays.

One ``tf.function`` with fully dynamic shapes is traced once per model: the
batch carries, per featurizer, flat feature ids with their flat positions
(``example * length + position``, sorted), so there is no padded feature
tensor and no retrace for other batch sizes or lengths. Embedding tables get
sparse gradients and a lazy Adam update that touches only the rows a batch
used; every other weight uses TensorFlow's fused Adam kernel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .architecture import LAYER_NORM_EPSILON, NetworkConfig
from .runtime_tf import import_tensorflow

tf = import_tensorflow()

_NEG = -1e9
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-7


@dataclass(frozen=True)
class TrainingOptions:
    """Regularisation and loss options (from DIETClassifier settings)."""

    drop_rate: float
    drop_rate_attention: float
    sparse_input_dropout: bool
    constrain_similarities: bool


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


def _layer_norm(x: Any, gamma: Any, beta: Any) -> Any:
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + LAYER_NORM_EPSILON) * gamma + beta


def _dense(x: Any, kernel: Any, bias: Any) -> Any:
    """``x @ kernel + bias`` for x of shape [..., in] via one 2-D matmul."""
    shape = tf.shape(x)
    flat = tf.matmul(tf.reshape(x, [-1, shape[-1]]), kernel) + bias
    return tf.reshape(flat, tf.concat([shape[:-1], tf.shape(kernel)[-1:]], axis=0))


class DietNetwork:
    """Variables, forward pass and one compiled training step (optionally anchored to ``weights``)."""

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
        self._m = {n: tf.Variable(tf.zeros_like(v)) for n, v in self.variables.items()}
        self._v = {n: tf.Variable(tf.zeros_like(v)) for n, v in self.variables.items()}
        self._step = tf.Variable(0.0, dtype=tf.float32)
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

    # ------------------------------------------------------------------ forward
    def _dropout(self, x: Any, rate: float, seed: Any, salt: int) -> Any:
        if rate <= 0.0:
            return x
        keep = tf.random.stateless_uniform(tf.shape(x), seed=seed + tf.constant([0, salt])) >= rate
        return tf.where(keep, x * (1.0 / (1.0 - rate)), tf.zeros_like(x))

    def _encode(self, features: Any, mask: Any, dense: Any, seed: Any, training: bool) -> Any:
        cfg, w = self.config, self.variables
        batch, length = tf.shape(mask)[0], tf.shape(mask)[1]
        d = cfg.size
        x = tf.zeros([batch * length, d])
        if cfg.dense_size:  # no input dropout on them (Rasa's dense_input_dropout: false)
            x += tf.reshape(_dense(dense, w["dense/kernel"], w["dense/bias"]), [batch * length, d])
        sentence = tf.zeros([batch, d])
        for i, (unit_ids, unit_segments, token_units, token_segments) in enumerate(features):
            if cfg.feature_sizes[i] == 0:
                continue
            rows = tf.gather(w[f"embed/{i}"], unit_ids)
            if training and self.options.sparse_input_dropout and self.options.drop_rate > 0:
                keep = tf.random.stateless_uniform(tf.shape(unit_ids), seed=seed + tf.constant([0, 100 + i]))
                rows = rows * tf.cast(keep >= self.options.drop_rate, tf.float32)[:, None]
            # segment ids are sorted (make_batch): sorted segment_sum is ~3x faster than unsorted
            units = tf.math.segment_sum(rows, unit_segments)
            part = tf.math.segment_sum(tf.gather(units, token_units), token_segments)
            part = tf.pad(part, [[0, batch * length - tf.shape(part)[0]], [0, 0]])
            if cfg.sentence_features[i]:
                sentence += tf.reduce_sum(tf.reshape(part, [batch, length, d])[:, 1:], axis=1)
            x += part
        x = tf.reshape(x, [batch, length, d])
        x += tf.concat([sentence[:, None, :], tf.zeros([batch, length - 1, d])], axis=1)
        h = _layer_norm(x, w["input_norm/gamma"], w["input_norm/beta"])
        h += tf.gather(w["position"], tf.minimum(tf.range(length), cfg.positions - 1))[None]
        rate = self.options.drop_rate if training else 0.0
        attn_rate = self.options.drop_rate_attention if training else 0.0
        h = self._dropout(h, rate, seed, 1)
        if cfg.context_window:
            token_mask = tf.concat([tf.zeros([batch, 1]), mask[:, 1:]], axis=1)[:, :, None]
            masked = h * token_mask
            c = cfg.context_window
            padded = tf.pad(masked, [[0, 0], [c, c], [0, 0]])
            shifted = [h if k == c else padded[:, k : k + length] for k in range(2 * c + 1)]
            context = tf.nn.relu(_dense(tf.concat(shifted, axis=-1), w["context/kernel"], w["context/bias"]))
            h += self._dropout(context, rate, seed, 2) * token_mask
        heads, dh = cfg.heads, d // cfg.heads
        key_bias = (1.0 - mask)[:, None, None, :] * _NEG
        for layer in range(cfg.layers):
            p = f"layer{layer}/"
            a = _layer_norm(h, w[p + "attn_norm/gamma"], w[p + "attn_norm/beta"])
            qkv = tf.reshape(_dense(a, w[p + "qkv/kernel"], w[p + "qkv/bias"]), [batch, length, 3, heads, dh])
            qkv = tf.transpose(qkv, [2, 0, 3, 1, 4])  # [3, B, H, L, dh]
            scores = tf.matmul(qkv[0], qkv[1], transpose_b=True) * (1.0 / float(np.sqrt(dh))) + key_bias
            probs = self._dropout(tf.nn.softmax(scores, axis=-1), attn_rate, seed, 10 + 4 * layer)
            attn = tf.reshape(tf.transpose(tf.matmul(probs, qkv[2]), [0, 2, 1, 3]), [batch, length, d])
            h += _dense(attn, w[p + "attn_out/kernel"], w[p + "attn_out/bias"])
            f = _layer_norm(h, w[p + "ffn_norm/gamma"], w[p + "ffn_norm/beta"])
            f = tf.nn.relu(_dense(f, w[p + "ffn_in/kernel"], w[p + "ffn_in/bias"]))
            h += self._dropout(_dense(f, w[p + "ffn_out/kernel"], w[p + "ffn_out/bias"]), rate, seed, 12 + 4 * layer)
        return _layer_norm(h, w["output_norm/gamma"], w["output_norm/beta"])

    def _similarities(self, sentence: Any) -> Any:
        w = self.variables
        u = tf.matmul(sentence, w["intent/kernel"]) + w["intent/bias"]
        labels = w["intent/labels"]
        if self.config.cosine:
            u = tf.math.l2_normalize(u, axis=-1, epsilon=1e-18)
            labels = tf.math.l2_normalize(labels, axis=-1, epsilon=1e-18)
            return tf.matmul(u, labels, transpose_b=True) * 5.0
        return tf.matmul(u, labels, transpose_b=True)

    def _heads(self, h: Any, mask: Any) -> dict[str, Any]:
        cfg, w = self.config, self.variables
        out: dict[str, Any] = {}
        if cfg.intent_classification:
            sentence = h[:, 0]
            out["similarities"] = self._similarities(sentence)
        if cfg.entity_recognition:
            tokens = h[:, 1:]
            out["emissions"] = _dense(tokens, w["entity/kernel"], w["entity/bias"])
            if cfg.num_roles:
                out["roles"] = _dense(tokens, w["role/kernel"], w["role/bias"])
            if cfg.num_groups:
                out["groups"] = _dense(tokens, w["group/kernel"], w["group/bias"])
        return out

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
            h = self._encode(features, mask, dense, seed, training=True)
            loss, accuracy = self._loss(self._heads(h, mask), mask, intents, tags, roles, groups)
        grads = tape.gradient(loss, variables)
        self._apply_adam(grads, learning_rate)
        for name, anchor in self._anchors.items():
            var = self.variables[name]
            var.assign(anchor + (1.0 - self.anchor_pull) * (var - anchor))
        return loss, accuracy

    def _apply_adam(self, grads: list[Any], learning_rate: Any) -> None:
        t = self._step.assign_add(1.0)
        beta1_power, beta2_power = tf.pow(BETA1, t), tf.pow(BETA2, t)
        lr = learning_rate * tf.sqrt(1.0 - beta2_power) / (1.0 - beta1_power)
        for name, grad in zip(self.names, grads):
            if grad is None:
                continue
            var, m, v = self.variables[name], self._m[name], self._v[name]
            if isinstance(grad, tf.IndexedSlices):  # lazy Adam: only the rows this batch used
                unique, index = tf.unique(grad.indices)
                values = tf.math.unsorted_segment_sum(grad.values, index, tf.shape(unique)[0])
                m_rows = BETA1 * tf.gather(m, unique) + (1.0 - BETA1) * values
                v_rows = BETA2 * tf.gather(v, unique) + (1.0 - BETA2) * tf.square(values)
                m.scatter_update(tf.IndexedSlices(m_rows, unique))
                v.scatter_update(tf.IndexedSlices(v_rows, unique))
                var.scatter_sub(tf.IndexedSlices(lr * m_rows / (tf.sqrt(v_rows) + EPSILON), unique))
            else:
                tf.raw_ops.ResourceApplyAdam(
                    var=var.handle,
                    m=m.handle,
                    v=v.handle,
                    beta1_power=beta1_power,
                    beta2_power=beta2_power,
                    lr=learning_rate,
                    beta1=tf.constant(BETA1),
                    beta2=tf.constant(BETA2),
                    epsilon=tf.constant(EPSILON),
                    grad=grad,
                )

    def _predict_step(self, features: Any, mask: Any, dense: Any) -> dict[str, Any]:
        h = self._encode(features, mask, dense, tf.constant([0, 0]), training=False)
        return self._heads(h, mask)
