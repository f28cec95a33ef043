"""NumPy prediction with the trained weights: the path ``parse`` uses.

It runs :func:`.architecture.forward`, the one definition of the network, with
NumPy ops on one message (training runs it with TensorFlow; a test checks both
give the same outputs). NumPy is deterministic for a given input, so a saved
and reloaded model predicts bit-identically, and parsing one message needs
neither TensorFlow nor a compiled graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from pipeline.training.ops import NUMPY, softmax

from . import architecture
from .architecture import NetworkConfig


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
    if config.dense_size and dense is None:
        raise ValueError("this model uses pretrained dense features; pass dense=")
    mask = np.ones((1, num_tokens + 1), dtype=np.float32)
    batch_dense = dense[None] if dense is not None else None
    h: np.ndarray = architecture.encode(NUMPY, weights, config, list(zip(ids, positions)), mask, batch_dense)
    return h[0]


def intent_similarities(weights: Mapping[str, np.ndarray], config: NetworkConfig, sentence: np.ndarray) -> np.ndarray:
    """DIET similarities [N, I] of sentence vectors [N, D] with every intent: the intent head of
    :func:`architecture.heads`, for callers that already hold sentence vectors (label growth)."""
    h = np.asarray(sentence, dtype=np.float32)[:, None, :]  # [N, 1, D]: the sentence slot only
    similarities: np.ndarray = architecture.heads(NUMPY, weights, config, h)["similarities"]
    return similarities


def predict(
    weights: Mapping[str, np.ndarray],
    config: NetworkConfig,
    ids: Sequence[np.ndarray],
    positions: Sequence[np.ndarray],
    num_tokens: int,
    dense: np.ndarray | None = None,
) -> RawPrediction:
    """Intent probabilities and per-token entity emissions of one message."""
    h = encode(weights, config, ids, positions, num_tokens, dense)[None]  # a batch of one
    out = architecture.heads(NUMPY, weights, config, h)
    intent_probs = softmax(out["similarities"])[0] if config.intent_classification else None
    emissions = role_probs = group_probs = None
    if config.entity_recognition and num_tokens:
        emissions = out["emissions"][0]
        if config.num_roles:
            role_probs = softmax(out["roles"])[0]
        if config.num_groups:
            group_probs = softmax(out["groups"])[0]
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

