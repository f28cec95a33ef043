"""The forward pass of :class:`~.pretrained.MiniLM` in TensorFlow, for featurizing training data.

Same weights and math as the NumPy forward pass (tanh GELU, LayerNorm eps
1e-12); TensorFlow runs the element-wise work on every core, which NumPy
does not, so featurizing thousands of messages is several times faster.
``parse`` keeps using NumPy; the two agree to float32 rounding (a test
checks), which the classifier on top does not notice.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .pretrained import DIMENSION, Forward, MiniLM
from .runtime_tf import import_tensorflow


def tensorflow_forward(model: MiniLM) -> Forward:
    """A :data:`~.pretrained.Forward` running ``model`` in TensorFlow (one graph per layer count)."""
    tf = import_tensorflow()
    word = tf.constant(model.word)
    position = tf.constant(model.position)
    type0 = tf.constant(model.type0)
    embed_norm = tuple(tf.constant(a) for a in model.embed_norm)
    blocks = [
        tuple(tuple(tf.constant(x) for x in part) if isinstance(part, tuple) else tf.constant(part) for part in block)
        for block in model.blocks
    ]
    heads = model.heads
    dh = DIMENSION // heads
    scale = 1.0 / math.sqrt(dh)
    root = math.sqrt(2.0 / math.pi)

    def layer_norm(x: Any, gamma: Any, beta: Any) -> Any:
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-12) * gamma + beta

    def build(layers: int) -> Any:
        def run(ids: Any, lengths: Any) -> Any:
            batch, length = tf.shape(ids)[0], tf.shape(ids)[1]
            valid = tf.sequence_mask(lengths, length, dtype=tf.float32)
            key_bias = ((1.0 - valid) * -1e9)[:, None, None, :]
            h = tf.gather(word, ids) + position[:length][None] + type0
            h = tf.reshape(layer_norm(h, *embed_norm), [batch * length, DIMENSION])
            for qkv_k, qkv_b, out_k, out_b, norm1, in_k, in_b, ffn_k, ffn_b, norm2 in blocks[:layers]:
                qkv = tf.transpose(
                    tf.reshape(tf.matmul(h, qkv_k) + qkv_b, [batch, length, 3, heads, dh]), [2, 0, 3, 1, 4]
                )
                scores = tf.nn.softmax(tf.matmul(qkv[0], qkv[1], transpose_b=True) * scale + key_bias, axis=-1)
                attn = tf.reshape(tf.transpose(tf.matmul(scores, qkv[2]), [0, 2, 1, 3]), [batch * length, DIMENSION])
                h = layer_norm(tf.matmul(attn, out_k) + out_b + h, *norm1)
                f = tf.matmul(h, in_k) + in_b
                f = 0.5 * f * (1.0 + tf.tanh(root * (f + 0.044715 * f * f * f)))
                h = layer_norm(tf.matmul(f, ffn_k) + ffn_b + h, *norm2)
            return tf.reshape(h, [batch, length, DIMENSION])

        return tf.function(
            run,
            autograph=False,
            input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32)],
        )

    graphs: dict[int, Any] = {}

    def forward(ids: np.ndarray, lengths: np.ndarray, layers: int) -> np.ndarray:
        if layers not in graphs:
            graphs[layers] = build(layers)
        return graphs[layers](ids.astype(np.int32), lengths.astype(np.int32)).numpy()

    return forward
