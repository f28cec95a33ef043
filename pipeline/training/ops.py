"""The array operations both networks' forward passes are written in, in NumPy and TensorFlow.

DIET (:func:`pipeline.training.nlu.architecture.forward`) and TED
(:func:`pipeline.training.core.ted.forward`) are each defined once, over an
``ops`` object: :data:`NUMPY` predicts (NumPy only, no dropout, deterministic),
:class:`TensorFlowOps` trains (differentiable; dropout from stateless random
ops when it has a seed). Both backends compute the same function; parity tests
hold them together (``tests/training/test_nlu_forward.py``, ``test_nlu.py``,
``test_core_model.py``).

Where the two backends round differently, each keeps the rounding the saved
models were trained and predict with: a NumPy prediction of a saved model and a
seeded training run stay bit-for-bit what they were. That is why LayerNorm has
two forms (:meth:`layer_norm`, DIET's; TED composes :meth:`mean` and
:meth:`rsqrt`) and why :meth:`residual` exists.

This module imports no TensorFlow: :class:`TensorFlowOps` is given the module.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

__all__ = ["Ops", "NumpyOps", "TensorFlowOps", "NUMPY", "layer_norm", "softmax"]

#: Smallest squared norm :meth:`Ops.l2_normalize` divides by in TensorFlow (its norm floor in NumPy: 1e-9).
_L2_EPSILON = 1e-18


class Ops(Protocol):
    """What a forward pass may call; tensors are NumPy arrays or TensorFlow tensors."""

    def shape(self, x: Any) -> Any:
        """The dimensions of ``x`` (ints in NumPy, a dynamic shape tensor in TensorFlow)."""

    def zeros(self, shape: Sequence[Any]) -> Any:
        """float32 zeros."""

    def arange(self, n: Any) -> Any:
        """0, 1, ..., n - 1."""

    def minimum(self, x: Any, y: Any) -> Any:
        """Elementwise minimum."""

    def gather(self, table: Any, indices: Any) -> Any:
        """Rows ``indices`` of ``table``."""

    def reshape(self, x: Any, shape: Sequence[Any]) -> Any:
        """``x`` with the given shape."""

    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        """``x`` with its axes permuted."""

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        """``xs`` joined along ``axis``."""

    def pad(self, x: Any, paddings: Sequence[Sequence[int]]) -> Any:
        """``x`` padded with zeros (``paddings``: before and after, per axis)."""

    def matmul(self, a: Any, b: Any, transpose_b: bool = False) -> Any:
        """Batched matrix product ``a @ b`` (``b`` transposed in its last two axes when asked)."""

    def dense(self, x: Any, kernel: Any, bias: Any) -> Any:
        """``x @ kernel + bias`` over the last axis of ``x``."""

    def residual(self, h: Any, x: Any, kernel: Any, bias: Any, rate: float = 0.0, salt: int = 0) -> Any:
        """``h + dropout(x @ kernel + bias)``: a residual connection."""

    def relu(self, x: Any) -> Any:
        """max(x, 0)."""

    def softmax(self, x: Any) -> Any:
        """Softmax over the last axis."""

    def mean(self, x: Any) -> Any:
        """Mean over the last axis, kept as an axis of size 1."""

    def rsqrt(self, x: Any) -> Any:
        """1 / sqrt(x)."""

    def layer_norm(self, x: Any, gamma: Any, beta: Any, epsilon: float) -> Any:
        """LayerNorm over the last axis."""

    def l2_normalize(self, x: Any) -> Any:
        """``x`` scaled to unit length over the last axis."""

    def dropout(self, x: Any, rate: float, salt: int) -> Any:
        """Inverted dropout (training only); ``salt`` makes each site's random mask its own."""

    def sparse_embed(
        self, x: Any, tables: Sequence[Any | None], features: Any, sentence: Sequence[bool], rate: float, salt: int
    ) -> Any:
        """``x`` [B, L, D] plus, per featurizer ``i``, the sum of ``tables[i]``'s rows of each
        token's feature ids (``None``: an empty vocabulary); a featurizer flagged in ``sentence``
        also adds its tokens' sum to the sentence slot (position 0). In training, whole feature
        ids are dropped with probability ``rate`` (not rescaled). ``features`` is the backend's
        layout: NumPy, one message's ``(ids, positions)`` per featurizer; TensorFlow, a batch
        packed by :func:`pipeline.training.nlu.trainer.make_batch`."""


def layer_norm(
    x: np.ndarray, gamma: np.ndarray | float, beta: np.ndarray | float, epsilon: float
) -> np.ndarray:
    """LayerNorm over the last axis in NumPy (``gamma=1, beta=0``: plain standardization)."""
    scale = np.float32(1.0 / x.shape[-1])
    centered = x - np.add.reduce(x, axis=-1, keepdims=True) * scale
    var = np.add.reduce(np.square(centered), axis=-1, keepdims=True) * scale
    normed: np.ndarray = centered * (np.float32(1.0) / np.sqrt(var + np.float32(epsilon))) * gamma + beta
    return normed


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax in NumPy."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    probs: np.ndarray = e / e.sum(axis=axis, keepdims=True)
    return probs


class NumpyOps:
    """The operations in NumPy, for prediction: float32, no dropout."""

    def shape(self, x: Any) -> Any:
        return x.shape

    def zeros(self, shape: Sequence[Any]) -> Any:
        return np.zeros(tuple(shape), dtype=np.float32)

    def arange(self, n: Any) -> Any:
        return np.arange(n)

    def minimum(self, x: Any, y: Any) -> Any:
        return np.minimum(x, y)

    def gather(self, table: Any, indices: Any) -> Any:
        return table[indices]

    def reshape(self, x: Any, shape: Sequence[Any]) -> Any:
        return np.reshape(x, tuple(shape))

    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        return np.transpose(x, tuple(perm))

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return np.concatenate(list(xs), axis=axis)

    def pad(self, x: Any, paddings: Sequence[Sequence[int]]) -> Any:
        # what np.pad does, without its per-call overhead (a noticeable part of one parse)
        out = np.zeros([size + before + after for size, (before, after) in zip(x.shape, paddings)], dtype=x.dtype)
        out[tuple(slice(before, before + size) for size, (before, _) in zip(x.shape, paddings))] = x
        return out

    def matmul(self, a: Any, b: Any, transpose_b: bool = False) -> Any:
        return a @ (np.swapaxes(b, -1, -2) if transpose_b else b)

    def dense(self, x: Any, kernel: Any, bias: Any) -> Any:
        return x @ kernel + bias

    def residual(self, h: Any, x: Any, kernel: Any, bias: Any, rate: float = 0.0, salt: int = 0) -> Any:
        # (h + x @ kernel) + bias: the rounding saved DIET models predict with
        return h + x @ kernel + bias

    def relu(self, x: Any) -> Any:
        return np.maximum(x, np.float32(0.0))

    def softmax(self, x: Any) -> Any:
        return softmax(x)

    def mean(self, x: Any) -> Any:
        return x.mean(axis=-1, keepdims=True)

    def rsqrt(self, x: Any) -> Any:
        return (1.0 / np.sqrt(x)).astype(np.float32)

    def layer_norm(self, x: Any, gamma: Any, beta: Any, epsilon: float) -> Any:
        return layer_norm(x, gamma, beta, epsilon)

    def l2_normalize(self, x: Any) -> Any:
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)

    def dropout(self, x: Any, rate: float, salt: int) -> Any:
        return x

    def sparse_embed(
        self, x: Any, tables: Sequence[Any | None], features: Any, sentence: Sequence[bool], rate: float, salt: int
    ) -> Any:
        if x.shape[0] != 1:
            raise ValueError(f"NumPy features hold one message; received a batch of {x.shape[0]}")
        out = x[0].copy()
        for table, (ids, positions), to_sentence in zip(tables, features, sentence):
            if table is None or ids.size == 0:
                continue
            part = np.zeros_like(out)
            rows = table[ids]
            if positions.size > 1 and np.all(positions[1:] >= positions[:-1]):  # sorted (as encode gives them)
                starts = np.flatnonzero(np.concatenate([[True], positions[1:] != positions[:-1]]))
                part[positions[starts]] = np.add.reduceat(rows, starts, axis=0)
            else:
                np.add.at(part, positions, rows)
            if to_sentence:
                part[0] += part[1:].sum(axis=0)
            out += part
        return out[None]


#: The NumPy operations (stateless: one instance serves every prediction).
NUMPY = NumpyOps()


class TensorFlowOps:
    """The operations in TensorFlow, for training; with ``seed`` (an int32 pair tensor) dropout is on.

    Dropout at site ``salt`` uses the stateless random stream ``seed + [0, salt]``, so one seed
    and step give one mask.
    """

    def __init__(self, tf: Any, seed: Any = None) -> None:
        self.tf = tf
        self.seed = seed

    def shape(self, x: Any) -> Any:
        return self.tf.shape(x)

    def zeros(self, shape: Sequence[Any]) -> Any:
        return self.tf.zeros(list(shape))

    def arange(self, n: Any) -> Any:
        return self.tf.range(n)

    def minimum(self, x: Any, y: Any) -> Any:
        return self.tf.minimum(x, y)

    def gather(self, table: Any, indices: Any) -> Any:
        return self.tf.gather(table, indices)

    def reshape(self, x: Any, shape: Sequence[Any]) -> Any:
        return self.tf.reshape(x, shape)

    def transpose(self, x: Any, perm: Sequence[int]) -> Any:
        return self.tf.transpose(x, perm)

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        return self.tf.concat(list(xs), axis=axis)

    def pad(self, x: Any, paddings: Sequence[Sequence[int]]) -> Any:
        return self.tf.pad(x, paddings)

    def matmul(self, a: Any, b: Any, transpose_b: bool = False) -> Any:
        return self.tf.matmul(a, b, transpose_b=transpose_b)

    def dense(self, x: Any, kernel: Any, bias: Any) -> Any:
        # one 2-D matmul: TensorFlow's gradient of a 3-D @ 2-D matmul is many times slower
        tf = self.tf
        shape = tf.shape(x)
        flat = tf.matmul(tf.reshape(x, [-1, shape[-1]]), kernel) + bias
        return tf.reshape(flat, tf.concat([shape[:-1], tf.shape(kernel)[-1:]], axis=0))

    def residual(self, h: Any, x: Any, kernel: Any, bias: Any, rate: float = 0.0, salt: int = 0) -> Any:
        return h + self.dropout(self.dense(x, kernel, bias), rate, salt)

    def relu(self, x: Any) -> Any:
        return self.tf.nn.relu(x)

    def softmax(self, x: Any) -> Any:
        return self.tf.nn.softmax(x, axis=-1)

    def mean(self, x: Any) -> Any:
        return self.tf.reduce_mean(x, axis=-1, keepdims=True)

    def rsqrt(self, x: Any) -> Any:
        return self.tf.math.rsqrt(x)

    def layer_norm(self, x: Any, gamma: Any, beta: Any, epsilon: float) -> Any:
        tf = self.tf
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + epsilon) * gamma + beta

    def l2_normalize(self, x: Any) -> Any:
        return self.tf.math.l2_normalize(x, axis=-1, epsilon=_L2_EPSILON)

    def dropout(self, x: Any, rate: float, salt: int) -> Any:
        if rate <= 0.0 or self.seed is None:
            return x
        tf = self.tf
        keep = tf.random.stateless_uniform(tf.shape(x), seed=self.seed + tf.constant([0, salt])) >= rate
        return tf.where(keep, x * (1.0 / (1.0 - rate)), tf.zeros_like(x))

    def sparse_embed(
        self, x: Any, tables: Sequence[Any | None], features: Any, sentence: Sequence[bool], rate: float, salt: int
    ) -> Any:
        # features per featurizer: (unit feature ids, unit of each id (sorted), unit at each token,
        # flat position ``example * length + position`` of each token unit (sorted)); see make_batch
        tf = self.tf
        shape = tf.shape(x)
        batch, length, d = shape[0], shape[1], x.shape[-1]
        flat = tf.reshape(x, [batch * length, d])
        sentence_sum = tf.zeros([batch, d])
        for i, (table, (unit_ids, unit_segments, token_units, token_segments)) in enumerate(zip(tables, features)):
            if table is None:
                continue
            rows = tf.gather(table, unit_ids)
            if rate > 0.0 and self.seed is not None:
                keep = tf.random.stateless_uniform(tf.shape(unit_ids), seed=self.seed + tf.constant([0, salt + i]))
                rows = rows * tf.cast(keep >= rate, tf.float32)[:, None]
            # segment ids are sorted (make_batch): sorted segment_sum is ~3x faster than unsorted
            units = tf.math.segment_sum(rows, unit_segments)
            part = tf.math.segment_sum(tf.gather(units, token_units), token_segments)
            part = tf.pad(part, [[0, batch * length - tf.shape(part)[0]], [0, 0]])
            if sentence[i]:
                sentence_sum += tf.reduce_sum(tf.reshape(part, [batch, length, d])[:, 1:], axis=1)
            flat += part
        x = tf.reshape(flat, [batch, length, d])
        return x + tf.concat([sentence_sum[:, None, :], tf.zeros([batch, length - 1, d])], axis=1)
