"""NumPy prediction with the trained weights: the path ``parse`` uses.

The math mirrors :mod:`.network` (TensorFlow, used for training) without
dropout; a test checks both give the same outputs. NumPy is deterministic
for a given input, so a saved and reloaded model predicts bit-identically,
and parsing one message needs neither TensorFlow nor a compiled graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .architecture import LAYER_NORM_EPSILON, NetworkConfig

def layer_norm(
    x: np.ndarray, gamma: np.ndarray | float, beta: np.ndarray | float, epsilon: float = LAYER_NORM_EPSILON
) -> np.ndarray:
    """LayerNorm over the last axis (``gamma=1, beta=0``: plain standardization)."""
    scale = np.float32(1.0 / x.shape[-1])
    centered = x - np.add.reduce(x, axis=-1, keepdims=True) * scale
    var = np.add.reduce(np.square(centered), axis=-1, keepdims=True) * scale
    return centered * (np.float32(1.0) / np.sqrt(var + np.float32(epsilon))) * gamma + beta


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@dataclass(frozen=True)
class RawPrediction:
    """Network outputs for one message of ``n`` tokens."""

    intent_probs: np.ndarray | None  # [I]
    emissions: np.ndarray | None  # [n, K]
    role_probs: np.ndarray | None  # [n, R]
    group_probs: np.ndarray | None  # [n, G]


def encode(
    weights: Mapping[str, np.ndarray],
    config: NetworkConfig,
    ids: Sequence[np.ndarray],
    positions: Sequence[np.ndarray],
    num_tokens: int,
    dense: np.ndarray | None = None,
) -> np.ndarray:
    """Contextual vectors [1 + num_tokens, D] of one message (row 0: sentence slot);
    ``dense`` [1 + num_tokens, F]: the pretrained features when the model uses them."""
    length = num_tokens + 1
    x = np.zeros((length, config.size), dtype=np.float32)
    if config.dense_size:
        if dense is None:
            raise ValueError("this model uses pretrained dense features; pass dense=")
        x += dense @ weights["dense/kernel"] + weights["dense/bias"]
    for i, (feature_ids, pos) in enumerate(zip(ids, positions)):
        if feature_ids.size == 0:
            continue
        part = np.zeros((length, config.size), dtype=np.float32)
        rows = weights[f"embed/{i}"][feature_ids]
        if pos.size > 1 and np.all(pos[1:] >= pos[:-1]):  # sorted (as encode gives them): one reduceat
            starts = np.flatnonzero(np.concatenate([[True], pos[1:] != pos[:-1]]))
            part[pos[starts]] = np.add.reduceat(rows, starts, axis=0)
        else:
            np.add.at(part, pos, rows)
        if config.sentence_features[i]:
            part[0] += part[1:].sum(axis=0)
        x += part
    h = layer_norm(x, weights["input_norm/gamma"], weights["input_norm/beta"])
    h = h + weights["position"][np.minimum(np.arange(length), config.positions - 1)]
    if config.context_window and num_tokens:
        c = config.context_window
        masked = h.copy()
        masked[0] = 0.0
        padded = np.concatenate([np.zeros((c, config.size), np.float32), masked, np.zeros((c, config.size), np.float32)])
        window = np.concatenate([h if k == c else padded[k : k + length] for k in range(2 * c + 1)], axis=1)
        context = np.maximum(window @ weights["context/kernel"] + weights["context/bias"], np.float32(0.0))
        context[0] = 0.0
        h = h + context
    heads, d = config.heads, config.size
    dh = d // heads
    for layer in range(config.layers):
        p = f"layer{layer}/"
        a = layer_norm(h, weights[p + "attn_norm/gamma"], weights[p + "attn_norm/beta"])
        qkv = a @ weights[p + "qkv/kernel"] + weights[p + "qkv/bias"]
        q, k, v = (qkv[:, j * d : (j + 1) * d].reshape(length, heads, dh).transpose(1, 0, 2) for j in range(3))
        scores = (q @ k.transpose(0, 2, 1)) * np.float32(1.0 / np.sqrt(dh))
        attn = softmax(scores, axis=-1) @ v  # [H, L, dh]
        attn = attn.transpose(1, 0, 2).reshape(length, d)
        h = h + attn @ weights[p + "attn_out/kernel"] + weights[p + "attn_out/bias"]
        f = layer_norm(h, weights[p + "ffn_norm/gamma"], weights[p + "ffn_norm/beta"])
        f = np.maximum(f @ weights[p + "ffn_in/kernel"] + weights[p + "ffn_in/bias"], np.float32(0.0))
        h = h + f @ weights[p + "ffn_out/kernel"] + weights[p + "ffn_out/bias"]
    return layer_norm(h, weights["output_norm/gamma"], weights["output_norm/beta"])


def intent_similarities(weights: Mapping[str, np.ndarray], config: NetworkConfig, sentence: np.ndarray) -> np.ndarray:
    """DIET similarities of the sentence vector(s) [..., D] with every intent [..., I]."""
    u = sentence @ weights["intent/kernel"] + weights["intent/bias"]
    labels = weights["intent/labels"]
    if config.cosine:
        u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-9)
        labels = labels / np.maximum(np.linalg.norm(labels, axis=-1, keepdims=True), 1e-9)
        return u @ labels.T * np.float32(5.0)
    return u @ labels.T


def predict(
    weights: Mapping[str, np.ndarray],
    config: NetworkConfig,
    ids: Sequence[np.ndarray],
    positions: Sequence[np.ndarray],
    num_tokens: int,
    dense: np.ndarray | None = None,
) -> RawPrediction:
    """Intent probabilities and per-token entity emissions of one message."""
    h = encode(weights, config, ids, positions, num_tokens, dense)
    intent_probs = None
    if config.intent_classification:
        sentence = h[0]
        intent_probs = softmax(intent_similarities(weights, config, sentence))
    emissions = role_probs = group_probs = None
    if config.entity_recognition and num_tokens:
        tokens = h[1:]
        emissions = tokens @ weights["entity/kernel"] + weights["entity/bias"]
        if config.num_roles:
            role_probs = softmax(tokens @ weights["role/kernel"] + weights["role/bias"])
        if config.num_groups:
            group_probs = softmax(tokens @ weights["group/kernel"] + weights["group/bias"])
    return RawPrediction(intent_probs, emissions, role_probs, group_probs)


# ------------------------------------------------------------------- decoding


def constrained_viterbi(log_probs: np.ndarray, allowed: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Most probable tag sequence [n] under per-token log-probabilities [n, K] that
    obeys the tag grammar ``allowed`` = (start[K], transition[K, K], end[K]) masks."""
    start_ok, trans_ok, end_ok = allowed
    greedy = log_probs.argmax(axis=1)
    # the per-token best tags are the optimum whenever they already obey the grammar (the usual case)
    if start_ok[greedy[0]] and end_ok[greedy[-1]] and trans_ok[greedy[:-1], greedy[1:]].all():
        return greedy
    neg = np.float32(-1e9)
    zero = np.float32(0.0)
    trans = np.where(trans_ok, zero, neg)
    score = log_probs[0] + np.where(start_ok, zero, neg)
    n = log_probs.shape[0]
    back = np.zeros((n, log_probs.shape[1]), dtype=np.int64)
    for t in range(1, n):
        total = score[:, None] + trans
        back[t] = total.argmax(axis=0)
        score = total.max(axis=0) + log_probs[t]
    score = score + np.where(end_ok, zero, neg)
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

