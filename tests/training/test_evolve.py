"""Finetuning through a growing label space (added intents and entity types): tiny real models."""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.errors import FinetuneRefused
from pipeline.evaluation import evaluate_nlu
from pipeline.predictions import build_prediction_rows, compute_prediction_diff
from pipeline.training.nlu import NluModel, check_finetune_compatible, finetune_nlu, train_nlu

from .test_nlu import NEW_INTENT, NLU_YAML, read_yaml, tiny_config

NEW_ENTITY = """
    version: "3.1"
    nlu:
    - intent: check_weather
      examples: |
        - weather for [skiing](activity) in [Oslo](city)
        - is it good for [surfing](activity) [today](date)
        - can i go [hiking](activity) [tomorrow](date)
        - weather for [sailing](activity) please
"""

MORE_TIME = """
    version: "3.1"
    nlu:
    - intent: ask_time
      examples: |
        - what is the time
        - do you know the time
        - time please
        - what time is it now
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[NluModel, Path]:
    data = read_yaml(tmp_path_factory.mktemp("data"), NLU_YAML)
    model = train_nlu(data, tiny_config(epochs=40), seed=3)
    directory = tmp_path_factory.mktemp("model") / "nlu"
    model.save(directory)
    return model, directory


def _intents(model: NluModel, texts: list[str]) -> list[str]:
    return [r["intent"]["name"] for r in model.parse_batch(texts)]


def test_finetune_with_an_added_intent_predicts_it_and_keeps_the_old_ones(
    base: tuple[NluModel, Path], tmp_path: Path
) -> None:
    model, directory = base
    data = read_yaml(tmp_path, NLU_YAML, NEW_INTENT, MORE_TIME)
    old_texts = [e.text for e in data.examples if e.intent != "ask_time"]
    before = _intents(model, old_texts)
    check_finetune_compatible(directory, data, tiny_config(epochs=40))  # does not raise
    tuned = finetune_nlu(directory, data, tiny_config(epochs=40), epoch_fraction=0.5, seed=3)
    assert tuned.labels.intents == ("ask_time", "book_flight", "check_weather", "goodbye", "greet")
    assert tuned.summary["intents_added"] == ["ask_time"]
    new_texts = [e.text for e in data.examples if e.intent == "ask_time"]
    assert _intents(tuned, new_texts) == ["ask_time"] * len(new_texts)
    assert _intents(tuned, old_texts) == before
    # saved and reloaded, it predicts the same
    tuned.save(tmp_path / "tuned")
    assert _intents(NluModel.load(tmp_path / "tuned"), new_texts + old_texts) == _intents(tuned, new_texts + old_texts)


def test_finetune_with_an_added_entity_type_extracts_it(base: tuple[NluModel, Path], tmp_path: Path) -> None:
    model, directory = base
    data = read_yaml(tmp_path, NLU_YAML, NEW_ENTITY)
    tuned = finetune_nlu(directory, data, tiny_config(epochs=40), epoch_fraction=1.0, seed=3)
    assert tuned.labels.entities == ("activity", "city", "date")
    assert tuned.summary["entities_added"] == ["activity"]
    found = [
        e["value"] for r in tuned.parse_batch([e.text for e in data.examples if any(s.entity == "activity" for s in e.entities)])
        for e in r["entities"] if e["entity"] == "activity"
    ]
    assert len(found) >= 3, found
    cities_before = [sorted(e["value"] for e in r["entities"] if e["entity"] == "city") for r in model.parse_batch(["weather in Berlin tomorrow", "forecast for NYC"])]
    cities_after = [sorted(e["value"] for e in r["entities"] if e["entity"] == "city") for r in tuned.parse_batch(["weather in Berlin tomorrow", "forecast for NYC"])]
    assert cities_after == cities_before


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(("- intent: goodbye", "- intent: farewell"), ["intent `farewell` added", "intent `goodbye` removed"], id="renamed"),
        pytest.param(("- intent: goodbye", "- intent: greet"), ["intent `goodbye` removed"], id="removed"),
    ],
)
def test_removed_or_renamed_intents_still_refuse_the_finetune(
    base: tuple[NluModel, Path], tmp_path: Path, edit: tuple[str, str], expected: list[str]
) -> None:
    _, directory = base
    with pytest.raises(FinetuneRefused) as refused:
        check_finetune_compatible(directory, read_yaml(tmp_path, NLU_YAML.replace(*edit)), tiny_config(epochs=40))
    assert list(refused.value.reasons) == expected


def test_prediction_diff_lists_exactly_the_flipped_utterances_of_a_crafted_pair(base: tuple[NluModel, Path]) -> None:
    """The second model is the first with the label embeddings of `greet` and `goodbye` swapped."""
    model, _ = base
    swapped = NluModel(
        model.settings, model.preprocessor, model.labels, model.network,
        {**model.weights, "intent/labels": _swap_rows(model.weights["intent/labels"], model.labels.intents, "greet", "goodbye")},
        model.synonyms,
    )
    test = read_yaml(Path(tempfile.mkdtemp()), NLU_YAML)
    before = evaluate_nlu(model.parse_batch, test)
    after = evaluate_nlu(swapped.parse_batch, test)
    diff = compute_prediction_diff(
        build_prediction_rows(before.predictions), build_prediction_rows(after.predictions), [e.text for e in test.examples]
    )
    right_before = {p["text"] for p in before.predictions if _right(p)}
    right_after = {p["text"] for p in after.predictions if _right(p)}
    assert right_before != right_after  # the swap changed something
    assert {f.text for f in diff.broken} == right_before - right_after
    assert {f.text for f in diff.fixed} == right_after - right_before
    assert diff.compared == len(test.examples)
    assert all(b.gold in ("greet", "goodbye") for b in diff.broken)
    harmed = [i.intent for i in diff.intents if i.delta < 0]
    assert set(harmed) == {"greet", "goodbye"} and [i.intent for i in diff.intents[:2]] == harmed[:2]


def _swap_rows(rows: np.ndarray, names: tuple[str, ...], a: str, b: str) -> np.ndarray:
    out = rows.copy()
    i, j = names.index(a), names.index(b)
    out[[i, j]] = rows[[j, i]]
    return out


def _right(p: dict[str, Any]) -> bool:
    spans = sorted((e["start"], e["end"], e["entity"]) for e in p["entities"])
    predicted = sorted((e["start"], e["end"], e["entity"]) for e in p["entity_predictions"])
    return p["intent"] == p["intent_prediction"]["name"] and spans == predicted


def _full_softmax_fit(kernel: np.ndarray, bias: np.ndarray, hidden: np.ndarray, tags: np.ndarray, new: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The reference: softmax regression over every column, updating only ``new``."""
    from pipeline.training.nlu.growth import TAG_PROBE_RATE, TAG_PROBE_STEPS

    kernel, bias = kernel.copy(), bias.copy()
    rows = np.arange(len(hidden))
    for _ in range(TAG_PROBE_STEPS):
        logits = hidden @ kernel + bias
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        probs[rows, tags] -= 1.0
        kernel[:, new] -= TAG_PROBE_RATE * (hidden.T @ probs[:, new]) / len(hidden)
        bias[new] -= TAG_PROBE_RATE * probs[:, new].mean(axis=0)
    return kernel, bias


@pytest.mark.parametrize("new", [[1, 4], [0, 5, 6], list(range(7))], ids=["two-columns", "first-and-last", "all-columns"])
def test_new_tag_columns_are_fitted_as_by_a_softmax_over_every_column(new: list[int]) -> None:
    from pipeline.training.nlu.growth import fit_new_tag_columns

    rng = np.random.default_rng(5)
    hidden = rng.normal(size=(120, 16)).astype(np.float32)
    tags = rng.integers(0, 7, size=120)
    kernel = rng.normal(size=(16, 7)).astype(np.float32)
    bias = rng.normal(size=7).astype(np.float32)
    fast_kernel, fast_bias = fit_new_tag_columns(kernel, bias, hidden, tags, new)
    slow_kernel, slow_bias = _full_softmax_fit(kernel, bias, hidden, tags, new)
    old = [c for c in range(7) if c not in new]
    assert np.array_equal(fast_kernel[:, old], kernel[:, old]) and np.array_equal(fast_bias[old], bias[old])
    np.testing.assert_allclose(fast_kernel, slow_kernel, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fast_bias, slow_bias, rtol=1e-4, atol=1e-4)
    assert not np.allclose(fast_kernel[:, new], kernel[:, new])  # the new columns did move


def _cosine_network(intents: int) -> tuple[dict[str, np.ndarray], Any]:
    """Identity intent projection over 3-d sentence vectors, label rows along the axes (cosine)."""
    from pipeline.training.nlu.architecture import NetworkConfig

    config = NetworkConfig(
        feature_sizes=(1,), sentence_features=(True,), size=3, layers=0, heads=1, positions=8,
        embedding_dimension=3, num_intents=intents, num_tags=0, num_roles=0, num_groups=0, cosine=True,
        intent_classification=True, entity_recognition=False,
    )
    weights = {"intent/kernel": np.eye(3, dtype=np.float32), "intent/bias": np.zeros(3, dtype=np.float32),
               "intent/labels": np.eye(3, dtype=np.float32)[:intents]}
    return weights, config


def test_neighbours_are_the_old_intents_ranked_first_for_a_share_of_a_new_intents_examples() -> None:
    from pipeline.training.nlu.growth import neighbour_intents

    weights, config = _cosine_network(3)
    old = ("alarm", "music", "weather")
    vectors = {
        # 7 of 10 look like music, 2 like alarm, 1 like weather
        "play_podcasts": np.array([[0.1, 1, 0]] * 7 + [[1, 0.2, 0]] * 2 + [[0, 0, 1]], dtype=np.float32),
        "convert_time": np.array([[1, 0, 0.1]] * 4, dtype=np.float32),
    }
    assert neighbour_intents(weights, config, old, vectors, share=0.2) == ("alarm", "music")
    assert neighbour_intents(weights, config, old, vectors, share=0.1) == ("alarm", "music", "weather")
    assert neighbour_intents(weights, config, old, {"empty": np.zeros((0, 3), dtype=np.float32)}) == ()


def test_neighbour_replay_tops_up_each_neighbour_to_its_quota_without_repeating_an_example() -> None:
    from pipeline.training.nlu.growth import neighbour_replay

    intents = ["music"] * 10 + ["alarm"] * 3 + ["weather"] * 6
    sampled = np.array([0, 1, 13])  # two music examples and one weather example already replayed
    extra = neighbour_replay(intents, sampled, ["music", "alarm"], seed=1, per_intent=5)
    chosen = Counter(intents[i] for i in extra)
    assert chosen == {"music": 3, "alarm": 3}  # music topped up to 5; alarm has only 3
    assert not set(extra) & set(sampled.tolist()) and len(set(extra.tolist())) == len(extra)
    assert np.array_equal(extra, neighbour_replay(intents, sampled, ["music", "alarm"], seed=1, per_intent=5))
    assert len(neighbour_replay(intents, sampled, [], seed=1)) == 0


def test_balanced_epochs_keep_every_old_record_and_cap_each_new_intent_per_epoch() -> None:
    from pipeline.training.nlu.growth import balanced_epochs

    intents = ["new_a"] * 8 + ["old"] * 5 + ["new_b"] * 2
    assert balanced_epochs(intents, (), seed=1) is None
    subset = balanced_epochs(intents, ("new_a", "new_b"), seed=1, per_epoch=3)
    assert subset is not None
    epochs = [subset(epoch) for epoch in range(4)]
    for rows in epochs:
        chosen = Counter(intents[i] for i in rows)
        assert chosen == {"old": 5, "new_a": 3, "new_b": 2} and list(rows) == sorted(set(rows.tolist()))
    assert len({tuple(rows) for rows in epochs}) > 1  # a fresh choice of new_a every epoch


def test_new_intent_rows_are_fitted_to_separate_their_examples_from_the_old_intents(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.training.nlu.growth as growth

    _, config = _cosine_network(3)
    config = replace(config, cosine=False, size=4, embedding_dimension=4, num_intents=4)
    rows = np.concatenate([np.eye(4, dtype=np.float32)[:3] * 5.0, np.zeros((1, 4), dtype=np.float32)])
    weights = {"intent/kernel": np.eye(4, dtype=np.float32), "intent/bias": np.zeros(4, dtype=np.float32), "intent/labels": rows}
    # the new intent (row 3) lies between old intent 1 and a direction no old intent uses
    centres = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0.7, 0, 0.7]], dtype=np.float32)
    intents = np.repeat(np.arange(4), 30)
    sentences = centres[intents] + np.random.default_rng(2).normal(scale=0.05, size=(120, 4)).astype(np.float32)
    monkeypatch.setattr(growth, "sentence_vectors", lambda w, c, i: sentences)  # the previous network's view, given
    inputs: list[Any] = [((), (), 1, None)] * len(sentences)
    before = (sentences @ rows.T).argmax(axis=1)
    assert (before[intents == 3] == 1).all()  # at the start every new example goes to the neighbour
    fitted = growth.fit_new_intent_rows(weights, config, inputs, intents, [3])
    assert np.array_equal(fitted[:3], rows[:3])  # old rows stay
    after = (sentences @ fitted.T).argmax(axis=1)
    assert (after == intents).mean() > 0.95, after
    assert np.array_equal(growth.fit_new_intent_rows(weights, replace(config, cosine=True), inputs, intents, [3]), rows)
