"""Growing a trained NLU network's label space for a finetune (NumPy only).

When the data only *gained* intents and/or entity types, the previous weights
are kept and the label-dependent weights grow:

* ``intent/labels`` [I, E]: old rows move to their new (sorted) positions; a
  new intent's row starts at the mean direction of its training examples'
  sentence embeddings under the previous network (``intent/kernel`` applied to
  the sentence vector) minus that of old examples (what all sentences share),
  scaled to the old rows' mean norm, so the new intent scores high for texts
  like its examples and not for every text, before any training step.
* ``entity/kernel`` [D, K], ``entity/bias`` [K]: old tag columns move to their
  new positions (tag ids are per entity type in sorted order); a new type's
  ``B-``/``I-``/``L-``/``U-`` columns start at the mean of the old types'
  columns with the same prefix, their bias one logit lower, then only they are
  fitted by softmax regression on the previous network's token vectors of the
  finetune sample (:func:`fit_new_tag_columns`); with no old entity head at
  all, the head starts from the seeded initial weights.

With intents added, the finetune also learns where each new intent ends and
the old ones it resembles begin: its *neighbours*, the old intents the previous
network ranks first for a share of the new intent's examples
(:func:`neighbour_intents`), get more examples replayed (:func:`neighbour_replay`);
every epoch sees all replayed examples and a capped, fresh choice of each new
intent's (:func:`balanced_epochs`); and the new rows of ``intent/labels`` are
fitted by softmax regression on the previous network's intent embeddings of an
epoch's sample, old rows fixed (:func:`fit_new_intent_rows`), before the first
finetune step (bench/RESULTS.md, issue 17, run 3).

Roles and groups do not grow (a finetune refuses them, see :mod:`.compat`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Sequence

import numpy as np

from .architecture import NetworkConfig, initial_weights
from .inference import encode, intent_similarities
from .labels import LabelMaps
from .pretrained import one_blas_thread

#: A new entity tag column's bias starts this many logits below its prefix's old mean.
NEW_TAG_BIAS_OFFSET = 1.0
#: At most this many examples of a new intent set its initial label embedding.
NEW_INTENT_EXAMPLES = 64
#: When intents are added, at least this many old examples per old intent are replayed (when there
#: are that many): a finetune sample dominated by the new intents teaches the classifier they are
#: frequent, and it then predicts them for old intents' texts (bench/RESULTS.md, issue 17).
GROWTH_REPLAY_PER_INTENT = 30
#: An old intent the previous network predicts for at least this share of a new intent's examples
#: is its *neighbour*: the boundary between them is what the finetune must learn ...
NEIGHBOUR_SHARE = 0.1
#: ... so up to this many of each neighbour's examples are replayed (instead of GROWTH_REPLAY_PER_INTENT),
NEIGHBOUR_REPLAY = 90
#: ... and every epoch sees up to this many examples of each new intent (a fresh seeded choice each epoch).
NEW_INTENT_PER_EPOCH = 90

__all__ = [
    "added_labels", "grow_label_weights", "fit_new_tag_columns", "token_vectors", "sentence_vectors",
    "neighbour_intents", "neighbour_replay", "balanced_epochs", "fit_new_intent_rows",
    "NEW_TAG_BIAS_OFFSET", "NEW_INTENT_EXAMPLES", "GROWTH_REPLAY_PER_INTENT", "NEIGHBOUR_SHARE",
    "NEIGHBOUR_REPLAY", "NEW_INTENT_PER_EPOCH",
]


def added_labels(old: LabelMaps, new: LabelMaps) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The intents and entity types ``new`` has and ``old`` has not, sorted."""
    return (
        tuple(sorted(set(new.intents) - set(old.intents))),
        tuple(sorted(set(new.entities) - set(old.entities))),
    )


def grow_label_weights(
    weights: Mapping[str, np.ndarray],
    old_config: NetworkConfig,
    new_config: NetworkConfig,
    old_labels: LabelMaps,
    new_labels: LabelMaps,
    sentence_vectors: Mapping[str, np.ndarray],
    seed: int,
    *,
    reference: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Weights for ``new_config``/``new_labels`` from the previous ones (see the module docstring).

    ``sentence_vectors``: per new intent, the previous network's sentence vectors
    [n, D] of (some of) its training examples; ``reference``: those of old examples,
    whose mean direction is taken out of a new intent's (the part every sentence shares
    would otherwise make the new intent score high on every text).
    """
    grown = dict(weights)
    fresh = initial_weights(new_config, seed)
    if new_config.intent_classification and old_labels.intents != new_labels.intents:
        old_rows = weights["intent/labels"]
        rows = fresh["intent/labels"].copy()
        norm = float(np.mean(np.linalg.norm(old_rows, axis=1))) if len(old_rows) else 1.0
        for i, name in enumerate(new_labels.intents):
            if name in old_labels.intents:
                rows[i] = old_rows[old_labels.intents.index(name)]
            elif name in sentence_vectors and len(sentence_vectors[name]):
                direction = _mean_direction(sentence_vectors[name], weights)
                if reference is not None and len(reference):
                    direction = direction - _mean_direction(reference, weights)
                rows[i] = direction / max(float(np.linalg.norm(direction)), 1e-9) * norm
        grown["intent/labels"] = rows.astype(np.float32)
    if new_config.entity_recognition:
        if not old_config.entity_recognition:
            for name in ("entity/kernel", "entity/bias"):
                grown[name] = fresh[name]
        elif old_labels.tags != new_labels.tags:
            grown["entity/kernel"], grown["entity/bias"] = _grow_tags(
                weights["entity/kernel"], weights["entity/bias"], old_labels, new_labels
            )
    return grown


def _mean_direction(vectors: np.ndarray, weights: Mapping[str, np.ndarray]) -> np.ndarray:
    """Mean of the unit-length intent-space embeddings of sentence vectors [n, D]."""
    u = vectors @ weights["intent/kernel"] + weights["intent/bias"]
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
    return u.mean(axis=0)


def _grow_tags(
    kernel: np.ndarray, bias: np.ndarray, old: LabelMaps, new: LabelMaps
) -> tuple[np.ndarray, np.ndarray]:
    old_index = {tag: i for i, tag in enumerate(old.tags)}
    new_kernel = np.zeros((kernel.shape[0], len(new.tags)), dtype=np.float32)
    new_bias = np.zeros(len(new.tags), dtype=np.float32)
    for j, tag in enumerate(new.tags):
        if tag in old_index:
            new_kernel[:, j], new_bias[j] = kernel[:, old_index[tag]], bias[old_index[tag]]
            continue
        prefix = tag.split("-", 1)[0]
        same = [i for t, i in old_index.items() if t.startswith(prefix + "-")]
        if same:
            new_kernel[:, j] = kernel[:, same].mean(axis=1)
            new_bias[j] = bias[same].mean() - NEW_TAG_BIAS_OFFSET
        else:
            new_bias[j] = bias[0] - NEW_TAG_BIAS_OFFSET
    return new_kernel, new_bias


def grown_config(old: NetworkConfig, feature_sizes: Sequence[int], labels: LabelMaps, entity_recognition: bool) -> NetworkConfig:
    """The previous network's config with grown vocabularies and label space."""
    return replace(
        old,
        feature_sizes=tuple(feature_sizes),
        num_intents=len(labels.intents),
        num_tags=len(labels.tags),
        entity_recognition=entity_recognition,
    )


#: Full-batch gradient steps (and their step size) of the new tag columns' softmax regression.
TAG_PROBE_STEPS, TAG_PROBE_RATE = 300, 0.5
#: The new intent rows' softmax regression takes as many steps of this size over the mean squared
#: norm of the embeddings (their scale depends on the trained network).
INTENT_PROBE_RATE = 1.0


def fit_new_tag_columns(
    kernel: np.ndarray, bias: np.ndarray, hidden: np.ndarray, tags: np.ndarray, new_columns: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Fit only the ``new_columns`` of the entity head by softmax regression on token vectors
    ``hidden`` [n, D] (the previous network's) with their tag ids ``tags`` [n]; old columns stay.

    A finetune runs few steps at a reduced learning rate: from a generic start the new tags would
    barely move, so they start where the previous network's token vectors already separate them.
    """
    kernel, bias = kernel.astype(np.float32).copy(), bias.astype(np.float32).copy()
    new = np.asarray(new_columns, dtype=np.int64)
    if not len(new) or not len(hidden):
        return kernel, bias
    with one_blas_thread():
        return _fit_columns(kernel, bias, np.ascontiguousarray(hidden, dtype=np.float32), tags, new)


def _fit_columns(
    kernel: np.ndarray,
    bias: np.ndarray,
    hidden: np.ndarray,
    tags: np.ndarray,
    new: np.ndarray,
    rate: float = TAG_PROBE_RATE,
    fit_bias: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient descent on the softmax cross-entropy of ``hidden @ kernel + bias`` over ``tags``,
    moving only the ``new`` columns (the old ones' share of the denominator is computed once)."""
    n = len(hidden)
    old = np.setdiff1d(np.arange(kernel.shape[1]), new)
    old_logits = hidden @ kernel[:, old] + bias[old]
    old_max = old_logits.max(axis=1) if len(old) else np.full(n, -np.inf, dtype=np.float32)
    old_sum = np.exp(old_logits - old_max[:, None]).sum(axis=1) if len(old) else np.zeros(n, dtype=np.float32)
    del old_logits
    position = {int(c): j for j, c in enumerate(new)}
    target = np.array([position.get(int(t), -1) for t in tags], dtype=np.int64)
    rows = np.flatnonzero(target >= 0)
    new_kernel, new_bias = kernel[:, new].copy(), bias[new].copy()
    for _ in range(TAG_PROBE_STEPS):
        logits = hidden @ new_kernel + new_bias
        top = np.maximum(old_max, logits.max(axis=1))
        probs = np.exp(logits - top[:, None])
        probs /= (probs.sum(axis=1) + old_sum * np.exp(old_max - top))[:, None]
        probs[rows, target[rows]] -= 1.0
        new_kernel -= rate * (hidden.T @ probs) / n
        if fit_bias:
            new_bias -= rate * probs.mean(axis=0)
    kernel[:, new], bias[new] = new_kernel, new_bias
    return kernel, bias


def fit_new_intent_rows(
    weights: Mapping[str, np.ndarray],
    config: NetworkConfig,
    inputs: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray], int, np.ndarray | None]],
    intents: np.ndarray,
    new_rows: Sequence[int],
) -> np.ndarray:
    """``weights["intent/labels"]`` [I, E] with only the ``new_rows`` fitted by softmax regression
    on the intent-space embeddings the previous network (``weights``, ``config``) computes for
    messages ``inputs`` of intents ``intents`` (ids into the rows); the old rows stay.

    The rows start where :func:`grow_label_weights` put them; after the fit a new intent outscores
    its neighbours on its own examples and stays below them on theirs, which a few reduced-rate
    finetune steps did not teach (bench/RESULTS.md). Inner-product similarities only (a cosine
    model keeps the start).
    """
    rows = weights["intent/labels"].astype(np.float32)
    new = np.asarray(new_rows, dtype=np.int64)
    if config.cosine or not len(new) or not len(inputs):
        return rows
    embedded = sentence_vectors(weights, config, inputs) @ weights["intent/kernel"] + weights["intent/bias"]
    rate = INTENT_PROBE_RATE / max(float(np.mean(np.sum(embedded * embedded, axis=1))), 1e-9)
    with one_blas_thread():
        kernel, _ = _fit_columns(
            np.ascontiguousarray(rows.T), np.zeros(len(rows), dtype=np.float32),
            np.ascontiguousarray(embedded, dtype=np.float32), np.asarray(intents), new, rate, fit_bias=False,
        )
    return np.ascontiguousarray(kernel.T)


def token_vectors(
    weights: Mapping[str, np.ndarray],
    config: NetworkConfig,
    inputs: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray], int, np.ndarray | None]],
) -> np.ndarray:
    """Token vectors [total tokens, D] of messages given as ``(ids, positions, num_tokens, dense)``."""
    with one_blas_thread():
        parts = [encode(weights, config, ids, pos, n, dense)[1:] for ids, pos, n, dense in inputs if n]
    return np.concatenate(parts) if parts else np.zeros((0, config.size), dtype=np.float32)


def sentence_vectors(
    weights: Mapping[str, np.ndarray],
    config: NetworkConfig,
    inputs: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray], int, np.ndarray | None]],
) -> np.ndarray:
    """Sentence vectors [n, D] of messages given as ``(ids, positions, num_tokens, dense)``."""
    if not inputs:
        return np.zeros((0, config.size), dtype=np.float32)
    with one_blas_thread():
        return np.stack([encode(weights, config, ids, pos, n, dense)[0] for ids, pos, n, dense in inputs])


def neighbour_intents(
    weights: Mapping[str, np.ndarray],
    config: NetworkConfig,
    old_intents: Sequence[str],
    sentence_vectors: Mapping[str, np.ndarray],
    share: float = NEIGHBOUR_SHARE,
) -> tuple[str, ...]:
    """The old intents the previous network (``weights``, ``config``) ranks first for at least
    ``share`` of some new intent's examples, given as their sentence vectors [n, D] per new intent."""
    chosen: set[str] = set()
    for vectors in sentence_vectors.values():
        if not len(vectors):
            continue
        firsts = np.bincount(intent_similarities(weights, config, vectors).argmax(axis=1), minlength=len(old_intents))
        chosen.update(old_intents[int(k)] for k in np.flatnonzero(firsts >= share * len(vectors)))
    return tuple(sorted(chosen))


def neighbour_replay(
    intents: Sequence[str], sampled: np.ndarray, neighbours: Sequence[str], seed: int, per_intent: int = NEIGHBOUR_REPLAY
) -> np.ndarray:
    """Positions in ``intents`` (the old examples' intents) to replay besides ``sampled`` (those already
    drawn) so that each neighbour intent has up to ``per_intent`` examples replayed (a seeded choice)."""
    rng = np.random.default_rng([seed, 3_000_017])
    taken = np.zeros(len(intents), dtype=bool)
    taken[np.asarray(sampled, dtype=np.int64)] = True
    extra = []
    for name in sorted(neighbours):
        rows = np.array([i for i, intent in enumerate(intents) if intent == name], dtype=np.int64)
        have = int(taken[rows].sum()) if len(rows) else 0
        free = rows[~taken[rows]] if len(rows) else rows
        want = min(len(free), max(per_intent - have, 0))
        if want:
            extra.append(rng.choice(free, size=want, replace=False))
    return np.sort(np.concatenate(extra)) if extra else np.zeros(0, dtype=np.int64)


def balanced_epochs(
    intents: Sequence[str], added: Sequence[str], seed: int, per_epoch: int = NEW_INTENT_PER_EPOCH
) -> Callable[[int], np.ndarray] | None:
    """Per epoch, the records (positions in ``intents``, their intents) a label-growing finetune trains
    on: every old intent's, and up to ``per_epoch`` of each added intent's (a fresh seeded choice every
    epoch); ``None`` (every record, every epoch) when no intent was added."""
    if not added:
        return None
    new = set(added)
    by_intent: dict[str, list[int]] = {}
    rest: list[int] = []
    for j, intent in enumerate(intents):
        (by_intent.setdefault(intent, []) if intent in new else rest).append(j)

    def subset(epoch: int) -> np.ndarray:
        rng = np.random.default_rng([seed, 2_000_003, epoch])
        chosen = [np.array(rest, dtype=np.int64)]
        for intent in sorted(by_intent):
            rows = np.array(by_intent[intent], dtype=np.int64)
            chosen.append(rng.choice(rows, size=min(per_epoch, len(rows)), replace=False))
        return np.sort(np.concatenate(chosen))

    return subset
