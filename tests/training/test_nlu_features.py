"""NLU preprocessing and settings: pure functions over literals (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.model import Component, Config, EntitySpan, LookupTable, NluData, NluExample, RegexFeature, freeze
from pipeline.errors import ConfigError
from pipeline.training.nlu.features import NluPreprocessor, Vocabulary, char_ngrams
from pipeline.training.nlu.labels import LabelMaps, allowed_transitions, decode_spans, encode_entities
from pipeline.data.config import default_pipeline
from pipeline.training.nlu.settings import DietOptions, NluSettings, auto_epochs, resolve_settings
from pipeline.training.nlu.tokenizer import Token, Tokenizer


def test_tokenizer_keeps_offsets_and_splits_possessives() -> None:
    tokens = Tokenizer().tokenize("Kate's e-mail at 10:30, don't!")
    assert tokens == (
        Token("Kate", 0, 4), Token("'s", 4, 6), Token("e-mail", 7, 13), Token("at", 14, 16),
        Token("10:30", 17, 22), Token("don", 24, 27), Token("'t", 27, 29),
    )  # fmt: skip
    assert Tokenizer(lowercase=True).tokenize("Hi THERE") == (Token("hi", 0, 2), Token("there", 3, 8))
    assert Tokenizer().tokenize("?! ...") == ()


def test_char_wb_ngrams_match_scikit_learn() -> None:
    assert char_ngrams("ab", 1, 4, word_boundaries=True) == [" ", "a", "b", " ", " a", "ab", "b ", " ab", "ab ", " ab "]
    assert char_ngrams("a", 3, 5, word_boundaries=True) == [" a "]  # a short word counts once
    assert char_ngrams("abc", 2, 2, word_boundaries=False) == ["ab", "bc"]


def test_vocabulary_is_append_only_with_stable_ids() -> None:
    vocab = Vocabulary(["b", "a"])
    assert vocab.extend(["a", "c", "b", "d"]) == 2
    assert vocab.keys == ("b", "a", "c", "d")
    assert vocab.lookup(["d", "zzz", "b"]) == [3, 0]


def _settings(**cvf: object) -> NluSettings:
    return resolve_settings(Config(pipeline=(Component("CountVectorsFeaturizer", freeze(cvf)),)))


def test_preprocessor_adapt_appends_and_encode_drops_unknown_keys() -> None:
    pre = NluPreprocessor(_settings(max_ngram=2))
    assert pre.adapt(["book a flight"]) == [5]  # book a flight, book a, a flight
    before = pre.vocabularies[0].keys
    assert pre.adapt(["book a hotel"]) == [2]  # hotel, a hotel
    assert pre.vocabularies[0].keys[:5] == before
    encoded = pre.encode("book a zeppelin")
    # sentence slot (0) holds the known bigram; tokens 1, 2 their words; "zeppelin" is unknown
    assert encoded.positions[0].tolist() == [0, 1, 2]
    assert [pre.vocabularies[0].keys[i] for i in encoded.ids[0]] == ["book a", "book", "a"]


def test_regex_and_lookup_features_mark_overlapping_tokens() -> None:
    settings = resolve_settings(Config(pipeline=(Component("RegexFeaturizer", freeze({"case_sensitive": False})),)))
    pre = NluPreprocessor(
        settings,
        regexes=[RegexFeature("zipcode", (r"\b[0-9]{5}\b",))],
        lookups=[LookupTable("city", ("new york", "Berlin"))],
    )
    pre.adapt([])
    assert pre.vocabularies[0].keys == ("regex:zipcode:\\b[0-9]{5}\\b", "lookup:city")
    encoded = pre.encode("from New York to 10115 berlin")
    by_position = {}
    for i, p in zip(encoded.ids[0].tolist(), encoded.positions[0].tolist()):
        by_position.setdefault(p, []).append(i)
    assert by_position == {2: [1], 3: [1], 5: [0], 6: [1]}


def test_lexical_features_use_the_window() -> None:
    settings = resolve_settings(
        Config(pipeline=(Component("LexicalSyntacticFeaturizer", freeze({"features": [["title"], ["BOS", "suffix2"], ["upper"]]})),))
    )
    pre = NluPreprocessor(settings)
    pre.adapt(["Hello WORLD"])
    assert pre.vocabularies[0].keys == ("0:suffix2:lo", "0:BOS:True", "1:upper:True", "-1:title:True", "0:suffix2:ld", "0:BOS:False")
    encoded = pre.encode("Hello WORLD")
    assert encoded.positions[0].tolist() == [1, 1, 1, 2, 2, 2]


def test_bilou_tags_round_trip() -> None:
    example = NluExample("fly from new york to rome", "book", (
        EntitySpan(9, 17, "city", "new york", role="from"), EntitySpan(21, 25, "city", "rome", role="to"),
    ))  # fmt: skip
    labels = LabelMaps.from_data(NluData((example,)), bilou=True)
    assert labels.tags == ("O", "B-city", "I-city", "L-city", "U-city") and labels.roles == ("from", "to")
    tags, roles, _ = encode_entities(example, Tokenizer().tokenize(example.text), labels)
    assert tags.tolist() == [0, 0, 1, 3, 0, 4] and roles.tolist() == [0, 0, 1, 1, 0, 2]
    assert decode_spans(tags.tolist(), labels) == [(2, 3, "city"), (5, 5, "city")]
    start, trans, end = allowed_transitions(labels)
    assert start.tolist() == [True, True, False, False, True] and end.tolist() == [True, False, False, True, True]
    assert trans[1].tolist() == [False, False, True, True, False]  # after B only I or L of the same entity


def test_default_pipeline_is_rasa_default_plus_pretrained_features_in_english() -> None:
    assert resolve_settings(Config()) == resolve_settings(Config(pipeline=default_pipeline("en")))
    settings = resolve_settings(Config())
    assert [f.name for f in settings.featurizers] == ["regex", "lexical", "word_1_1", "char_wb_1_4"]
    assert settings.language_model == "all-MiniLM-L6-v2"
    assert settings.fallback_threshold == 0.3 and settings.synonyms
    assert NluSettings.from_config(settings.get_config()) == settings
    for language in ("de", "pt_BR", "zh"):
        other = resolve_settings(Config(language=language))
        assert other.language_model is None and [f.name for f in other.featurizers] == [f.name for f in settings.featurizers]
    assert resolve_settings(Config(language="en_US")).language_model == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    ("component", "message"),
    [
        pytest.param(Component("DIETClassifier", freeze({"epochz": 3})),
                     "DIETClassifier: unknown option 'epochz'; valid options are BILOU_flag, ", id="unknown-option"),
        pytest.param(Component("CountVectorsFeaturizer", freeze({"analyzer": "chars"})),
                     "option 'analyzer' must be one of word, char, char_wb; received 'chars'", id="bad-choice"),
        pytest.param(Component("DIETClassifier", freeze({"transformer_size": 10})),
                     "multiple of number_of_attention_heads; received transformer_size=10", id="heads"),
        pytest.param(Component("SpacyNLP"), "valid components are WhitespaceTokenizer, ", id="unknown-component"),
    ],
)
def test_config_errors_list_valid_forms_and_what_was_received(component: Component, message: str) -> None:
    pipeline = (Component("CountVectorsFeaturizer"), component)
    with pytest.raises(ConfigError) as error:
        resolve_settings(Config(pipeline=pipeline))
    assert message in error.value.message


def test_rasa_options_without_meaning_here_are_ignored_and_listed() -> None:
    settings = resolve_settings(
        Config(pipeline=(Component("CountVectorsFeaturizer", freeze({"OOV_token": "oov"})),
                         Component("DIETClassifier", freeze({"tensorboard_log_directory": "x", "epochs": 5}))))
    )  # fmt: skip
    assert settings.ignored == ("CountVectorsFeaturizer.OOV_token", "DIETClassifier.tensorboard_log_directory")
    assert settings.diet.epochs == 5
    assert np.isclose(settings.diet.learning_rate, 0.005)


@pytest.mark.parametrize(
    ("epochs", "examples", "expected"),
    [
        pytest.param(None, 9960, 18, id="large-data-default"),
        pytest.param(None, 640, 150, id="small-data-more-steps"),
        pytest.param(None, 24, 300, id="tiny-data-capped-at-rasa-default"),
        pytest.param(7, 24, 7, id="explicit-epochs-win"),
        pytest.param(100, 9960, 18, id="config-epochs-are-an-upper-bound-on-large-data"),
        pytest.param(100, 640, 100, id="config-epochs-below-the-step-floor"),
    ],
)
def test_auto_epochs(epochs: int | None, examples: int, expected: int) -> None:
    assert auto_epochs(DietOptions(epochs=epochs), examples) == expected


def test_config_epochs_run_exactly_without_early_stopping() -> None:
    assert auto_epochs(DietOptions(epochs=100, early_stopping=False), 9960) == 100


def test_auto_epochs_with_pretrained_features() -> None:
    assert auto_epochs(DietOptions(), 9960, pretrained=True) == 15
    assert auto_epochs(DietOptions(), 640, pretrained=True) == 150  # small data: the step floor decides
    assert auto_epochs(DietOptions(epochs=4), 9960, pretrained=True) == 4
