"""DIET's one forward pass run by both backends, the shared ops, Adam and the batch-size ramp.

The network (:func:`pipeline.training.nlu.architecture.forward`) is defined once; these
tests run it with NumPy (one message at a time, as ``parse`` does) and with TensorFlow
(padded batches, as training does) on random weights of every network shape, without
training, and check the shared optimiser against Adam's formula.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from pipeline.training.nlu import inference
from pipeline.training.nlu.architecture import NetworkConfig, TrainingOptions, initial_weights
from pipeline.training.ops import NUMPY, TensorFlowOps
from pipeline.training.optim import BETA1, BETA2, EPSILON, Adam, batch_size_for

BASE = NetworkConfig(
    feature_sizes=(30, 0, 12),
    sentence_features=(True, False, False),
    size=8,
    layers=1,
    heads=2,
    positions=6,
    embedding_dimension=4,
    num_intents=5,
    num_tags=7,
    num_roles=3,
    num_groups=2,
    cosine=True,
    intent_classification=True,
    entity_recognition=True,
)

SHAPES = {
    "default": BASE,
    "inner-similarity, 2 layers, wide context": replace(BASE, cosine=False, layers=2, context_window=2),
    "no context, no transformer": replace(BASE, context_window=0, layers=0),
    "dense features, intents only": replace(
        BASE, dense_size=5, entity_recognition=False, num_roles=0, num_groups=0, positions=3
    ),
    "entities only": replace(BASE, intent_classification=False, num_groups=0),
}


def random_weights(config: NetworkConfig, seed: int) -> dict[str, np.ndarray]:
    """Initial weights with noise on every array (so biases, gains and label rows all matter)."""
    rng = np.random.default_rng(seed)
    return {
        name: (value + rng.normal(0.0, 0.3, value.shape)).astype(np.float32)
        for name, value in initial_weights(config, seed).items()
    }


def random_records(config: NetworkConfig, lengths: list[int], seed: int) -> list[Any]:
    """Training records of messages with ``lengths`` tokens and random feature units."""
    from pipeline.training.nlu.trainer import Record

    rng = np.random.default_rng(seed)
    records = []
    for n in lengths:
        positions, keys, ids = [], [], []
        for vocab in config.feature_sizes:
            units = [] if vocab == 0 else [
                (p, tuple(sorted(set(rng.integers(0, vocab, rng.integers(1, 4)).tolist()))))
                for p in range(n + 1)
                for _ in range(rng.integers(0, 3))
            ]
            positions.append(np.array([p for p, _ in units], dtype=np.int32))
            keys.append(tuple(key for _, key in units))
            ids.append(tuple(np.array(key, dtype=np.int32) for _, key in units))
        dense = rng.normal(size=(n + 1, config.dense_size)).astype(np.float32) if config.dense_size else None
        records.append(
            Record(
                n, tuple(positions), tuple(keys), tuple(ids), int(rng.integers(config.num_intents)),
                rng.integers(0, config.num_tags, n).astype(np.int32),
                rng.integers(0, max(config.num_roles, 1), n).astype(np.int32),
                rng.integers(0, max(config.num_groups, 1), n).astype(np.int32),
                dense,
            )
        )
    return records


@pytest.mark.parametrize("config", list(SHAPES.values()), ids=list(SHAPES))
def test_numpy_per_message_and_tensorflow_batch_run_the_same_network(config: NetworkConfig) -> None:
    from pipeline.training.nlu.network import DietNetwork
    from pipeline.training.nlu.trainer import _record_inputs, make_batch

    weights = random_weights(config, seed=3)
    records = random_records(config, [4, 1, 0, 7], seed=5)  # padded batch; one message without tokens
    batch = make_batch(records)
    network = DietNetwork(config, weights, TrainingOptions(0.3, 0.2, True, True))  # dropout off when predicting
    outputs = {name: value.numpy() for name, value in network.predict_step(batch.features, batch.mask, batch.dense).items()}
    heads = {"similarities"} if config.intent_classification else set()
    if config.entity_recognition:
        heads |= {"emissions"} | ({"roles"} if config.num_roles else set()) | ({"groups"} if config.num_groups else set())
    assert set(outputs) == heads
    for row, record in enumerate(records):
        raw = inference.predict(weights, config, *_record_inputs(record))
        n = record.num_tokens
        if config.intent_classification:
            assert raw.intent_probs is not None
            sims = outputs["similarities"][row]
            expected = np.exp(sims - sims.max()) / np.exp(sims - sims.max()).sum()
            np.testing.assert_allclose(raw.intent_probs, expected, rtol=1e-4, atol=1e-6)
        else:
            assert raw.intent_probs is None
        if config.entity_recognition and n:
            assert raw.emissions is not None
            np.testing.assert_allclose(raw.emissions, outputs["emissions"][row, :n], rtol=1e-4, atol=1e-5)
            if config.num_roles:
                assert raw.role_probs is not None
                roles = outputs["roles"][row, :n]
                expected = np.exp(roles - roles.max(-1, keepdims=True))
                np.testing.assert_allclose(raw.role_probs, expected / expected.sum(-1, keepdims=True), atol=1e-5)
        else:
            assert raw.emissions is None and raw.role_probs is None and raw.group_probs is None


def test_padding_does_not_change_a_message() -> None:
    """Masked keys get exactly zero attention and the context never reaches into the padding."""
    from pipeline.training.nlu.network import DietNetwork
    from pipeline.training.nlu.trainer import make_batch

    config = replace(BASE, layers=2, context_window=2)
    network = DietNetwork(config, random_weights(config, seed=1), TrainingOptions(0.0, 0.0, False, True))
    short, long = random_records(config, [2, 9], seed=2)
    alone = make_batch([short])
    padded = make_batch([short, long])
    a = network.predict_step(alone.features, alone.mask, alone.dense)
    b = network.predict_step(padded.features, padded.mask, padded.dense)
    np.testing.assert_allclose(a["similarities"].numpy()[0], b["similarities"].numpy()[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["emissions"].numpy()[0], b["emissions"].numpy()[0, :2], rtol=1e-5, atol=1e-6)


def test_numpy_ops_hold_one_message() -> None:
    with pytest.raises(ValueError, match="one message; received a batch of 2"):
        NUMPY.sparse_embed(np.zeros((2, 3, 4), np.float32), [np.ones((5, 4), np.float32)], [], [False], 0.0, 0)


def test_tensorflow_dropout_only_with_a_seed_and_the_same_mask_for_the_same_seed() -> None:
    from pipeline.training.runtime import configure_tensorflow

    tf = configure_tensorflow()
    x = tf.ones([64, 32])
    assert TensorFlowOps(tf).dropout(x, 0.5, 1) is x  # no seed: predicting
    seeded = TensorFlowOps(tf, tf.constant([7, 3]))
    assert seeded.dropout(x, 0.0, 1) is x
    dropped = seeded.dropout(x, 0.25, 1).numpy()
    kept = dropped[dropped != 0.0]
    assert 0.6 < kept.size / dropped.size < 0.9
    np.testing.assert_allclose(kept, 1.0 / 0.75)
    np.testing.assert_array_equal(dropped, seeded.dropout(x, 0.25, 1).numpy())
    assert not np.array_equal(dropped, seeded.dropout(x, 0.25, 2).numpy())  # each site its own mask


def test_adam_follows_its_formula_and_updates_only_the_embedding_rows_a_batch_used() -> None:
    from pipeline.training.runtime import configure_tensorflow

    tf = configure_tensorflow()
    rng = np.random.default_rng(0)
    table0 = rng.normal(size=(6, 3)).astype(np.float32)
    kernel0 = rng.normal(size=(3,)).astype(np.float32)
    table, kernel = tf.Variable(table0), tf.Variable(kernel0)
    adam = Adam(tf, [table, kernel])
    rows = [np.array([1, 4, 1]), np.array([4, 2])]
    lr = 0.01

    @tf.function(autograph=False)
    def step(ids: Any) -> None:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.linalg.matvec(tf.gather(table, ids), kernel)))
        adam.apply(tape.gradient(loss, [table, kernel]), tf.constant(lr))

    # reference: Adam in float64; a table row's moments advance only in steps that use the row
    ref_t, ref_k = table0.astype(np.float64), kernel0.astype(np.float64)
    m_t, v_t, m_k, v_k = np.zeros_like(ref_t), np.zeros_like(ref_t), np.zeros_like(ref_k), np.zeros_like(ref_k)
    for t, ids in enumerate(rows, start=1):
        step(tf.constant(ids))
        out = np.einsum("nd,d->n", ref_t[ids], ref_k)
        g_rows = 2 * out[:, None] * ref_k[None]
        g_k = (2 * out[:, None] * ref_t[ids]).sum(axis=0)
        g_t = np.zeros_like(ref_t)
        np.add.at(g_t, ids, g_rows)
        used = np.unique(ids)
        step_size = lr * np.sqrt(1 - BETA2**t) / (1 - BETA1**t)
        m_t[used] = BETA1 * m_t[used] + (1 - BETA1) * g_t[used]
        v_t[used] = BETA2 * v_t[used] + (1 - BETA2) * g_t[used] ** 2
        ref_t[used] -= step_size * m_t[used] / (np.sqrt(v_t[used]) + EPSILON)
        m_k = BETA1 * m_k + (1 - BETA1) * g_k
        v_k = BETA2 * v_k + (1 - BETA2) * g_k**2
        ref_k -= step_size * m_k / (np.sqrt(v_k) + EPSILON)
    np.testing.assert_allclose(table.numpy(), ref_t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kernel.numpy(), ref_k, rtol=1e-5, atol=1e-6)
    untouched = [0, 3, 5]
    np.testing.assert_array_equal(table.numpy()[untouched], table0[untouched])
    assert not np.allclose(table.numpy()[[1, 2, 4]], table0[[1, 2, 4]])


@pytest.mark.parametrize(
    ("epoch", "epochs", "expected"),
    [(0, 10, 64), (9, 10, 256), (3, 7, 160), (0, 1, 64), (5, 0, 64)],
    ids=["first epoch: smallest", "last epoch: largest", "linear in between", "one epoch", "no epochs"],
)
def test_batch_size_ramps_linearly_for_both_models(epoch: int, epochs: int, expected: int) -> None:
    assert batch_size_for(epoch, epochs, (64, 256)) == expected
