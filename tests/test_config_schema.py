"""One config schema: the trainers' resolvers run at load time and report with config.yml:line.

Every option Rasa 2.x/3.x accepts for a component deltatrain implements is
accepted (used, or listed in one warning per component); unknown options and
values are errors naming the line, the valid forms and what was received;
components deltatrain cannot stand in for are errors unless ``--ignore-unknown-components``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.data.loader import DirectorySource, ProjectPaths, load_project
from pipeline.data.model import Component, Config, freeze
from pipeline.errors import ConfigError, DataError, Location, Problem
from pipeline.training.core.settings import resolve_settings as resolve_core
from pipeline.training.nlu.settings import resolve_settings as resolve_nlu
from pipeline.training.options import Resolution
from tests.helpers import write_project

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT.parent / "shared" / "rasa-examples"  # shared/ lies beside the checkout (here and in CI)

NLU = """
    version: "3.1"
    nlu:
    - intent: greet
      examples: |
        - hello
        - hi
    - intent: bye
      examples: |
        - bye
        - see you
"""
DOMAIN = """
    version: "3.1"
    intents: [greet, bye]
    responses:
      utter_greet:
      - text: hi
"""
STORIES = """
    version: "3.1"
    stories:
    - story: hi
      steps:
      - intent: greet
      - action: utter_greet
"""


def project_files(config: str) -> dict[str, str]:
    return {"config.yml": config, "domain.yml": DOMAIN, "data/nlu.yml": NLU, "data/stories.yml": STORIES}


def load(tmp_path: Path, config: str, *, ignore: bool = False) -> tuple[Config, list[Problem]]:
    """Load a project with this config.yml; (config, config warnings) or DataError."""
    root = write_project(tmp_path, project_files(config))
    project, problems = load_project(DirectorySource(root), ProjectPaths(ignore_unknown_components=ignore))
    return project.config, [p for p in problems if p.code == "config"]


def config_errors(tmp_path: Path, config: str, *, ignore: bool = False) -> list[Problem]:
    root = write_project(tmp_path, project_files(config))
    with pytest.raises(DataError) as caught:
        load_project(DirectorySource(root), ProjectPaths(ignore_unknown_components=ignore))
    return [p for p in caught.value.problems if p.is_error]


# ------------------------------------------------ the reported case: a Rasa 2.x TED option


RASA2_TED = """
    pipeline:
      - name: WhitespaceTokenizer
      - name: CountVectorsFeaturizer
      - name: DIETClassifier
        epochs: 5
    policies:
      - name: TEDPolicy
        max_history: 5
        epochs: 10
        evaluate_on_num_examples: 0
        evaluate_every_num_epochs: 5
        droprate_a: 0.2
        tensorboard_log_directory: ./tb
      - name: RulePolicy
"""


def test_rasa2_ted_options_are_accepted_with_one_warning_naming_the_line(tmp_path: Path) -> None:
    config, warnings = load(tmp_path, RASA2_TED)
    [warning] = warnings
    assert warning.severity == "warning" and warning.location == Location("config.yml", 7)
    assert "evaluate_on_num_examples (Rasa's old name of evaluate_on_number_of_examples)" in warning.message
    assert "tensorboard_log_directory" in warning.message and "droprate_a" not in warning.message
    ted = resolve_core(config).ted
    assert ted is not None and ted.drop_rate_dialogue == 0.2  # Rasa 1/2 name, used under its new name
    assert ted.max_history == 5 and ted.epochs == 10


def test_validate_cli_reports_config_problems_with_their_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = RASA2_TED.replace("evaluate_on_num_examples: 0", "evaluate_on_num_exampels: 0")
    root = write_project(tmp_path, project_files(bad))
    cwd = os.getcwd()
    try:
        os.chdir(root)
        code = main(["data", "validate"], environ={})
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 1
    assert "config.yml:10: error: TEDPolicy: unknown option 'evaluate_on_num_exampels'" in err
    assert "valid options are" in err and "evaluate_on_number_of_examples" in err
    assert "received evaluate_on_num_exampels=0" in err


def test_train_stops_at_a_config_error_before_importing_tensorflow(tmp_path: Path) -> None:
    """The reported bug: NLU trained for minutes, then TEDPolicy failed on an option."""
    bad = RASA2_TED.replace("epochs: 10", "epochs: ten")
    root = write_project(tmp_path, project_files(bad))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "train", "--out", str(tmp_path / "models")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr[-2000:]
    assert "config.yml:9: error: TEDPolicy: option 'epochs' must be an integer >= 0; received 'ten'" in run.stderr
    assert "tensorflow" not in run.stderr  # -X importtime lists every module imported
    assert not (tmp_path / "models").exists()


def test_validate_imports_no_tensorflow(tmp_path: Path) -> None:
    root = write_project(tmp_path, project_files(RASA2_TED))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "data", "validate"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "pipeline.training.nlu.settings" in run.stderr and "pipeline.training.core.settings" in run.stderr
    assert "tensorflow" not in run.stderr


# ------------------------------------------------ every Rasa 2.x/3.x option of the implemented components

#: Options from Rasa 2.x and 3.x ``defaults`` / ``get_default_config()``, with Rasa's default values.
RASA_OPTIONS: dict[str, dict[str, Any]] = {
    "WhitespaceTokenizer": {"intent_tokenization_flag": False, "intent_split_symbol": "_", "token_pattern": r"\w+"},
    "RegexFeaturizer": {
        "case_sensitive": True, "use_lookup_tables": True, "use_regexes": True, "use_word_boundaries": True,
        "number_additional_patterns": 10,
    },
    "LexicalSyntacticFeaturizer": {"features": [["low", "title"], ["BOS", "EOS", "pos", "pos2"], ["low"]]},
    "CountVectorsFeaturizer": {
        "analyzer": "word", "min_ngram": 1, "max_ngram": 1, "lowercase": True, "use_shared_vocab": False,
        "strip_accents": None, "stop_words": None, "min_df": 1, "max_df": 1.0, "max_features": None,
        "OOV_token": None, "OOV_words": [], "additional_vocabulary_size": {"text": None}, "use_lemma": True,
    },
    "DIETClassifier": {
        "hidden_layers_sizes": {"text": [], "label": []}, "share_hidden_layers": False, "transformer_size": 256,
        "number_of_transformer_layers": 2, "number_of_attention_heads": 4, "use_key_relative_attention": False,
        "use_value_relative_attention": False, "max_relative_position": 5, "unidirectional_encoder": False,
        "batch_size": [64, 256], "batch_strategy": "balanced", "epochs": 300, "random_seed": None,
        "learning_rate": 0.001, "embedding_dimension": 20, "dense_dimension": {"text": 128, "label": 20},
        "concat_dimension": {"text": 128, "label": 20}, "number_of_negative_examples": 20,
        "similarity_type": "auto", "loss_type": "cross_entropy", "ranking_length": 10,
        "maximum_positive_similarity": 0.8, "maximum_negative_similarity": -0.4,
        "use_maximum_negative_similarity": True, "scale_loss": False, "regularization_constant": 0.002,
        "negative_margin_scale": 0.8, "drop_rate": 0.2, "drop_rate_attention": 0, "connection_density": 0.2,
        "use_sparse_input_dropout": True, "use_dense_input_dropout": True,
        "evaluate_every_number_of_epochs": 20, "evaluate_on_number_of_examples": 0,
        "intent_classification": True, "entity_recognition": True, "use_masked_language_model": False,
        "BILOU_flag": True, "tensorboard_log_directory": None, "tensorboard_log_level": "epoch",
        "checkpoint_model": False, "featurizers": [], "split_entities_by_comma": True,
        "constrain_similarities": False, "model_confidence": "softmax", "renormalize_confidences": False,
        "run_eagerly": False, "use_gpu": True, "weight_sparsity": 0.8,
    },
    "EntitySynonymMapper": {},
    "FallbackClassifier": {"threshold": 0.3, "ambiguity_threshold": 0.1},
    "DucklingEntityExtractor": {
        "dimensions": ["time"], "url": "http://localhost:8000", "locale": "de_DE", "timezone": "UTC", "timeout": 3,
    },
    "LanguageModelFeaturizer": {"model_name": "bert", "model_weights": "rasa/LaBSE", "cache_dir": None},
}
RASA_POLICY_OPTIONS: dict[str, dict[str, Any]] = {
    "TEDPolicy": {
        "hidden_layers_sizes": {"text": [], "action_text": []}, "dense_dimension": {"text": 128},
        "concat_dimension": {"text": 128}, "encoding_dimension": 50,
        "transformer_size": {"text": 128, "dialogue": 128}, "number_of_transformer_layers": {"dialogue": 1},
        "number_of_attention_heads": 4, "use_key_relative_attention": False,
        "use_value_relative_attention": False, "max_relative_position": 5, "unidirectional_encoder": False,
        "batch_size": [64, 256], "batch_strategy": "balanced", "epochs": 1, "random_seed": None,
        "learning_rate": 0.001, "embedding_dimension": 20, "number_of_negative_examples": 20,
        "similarity_type": "auto", "loss_type": "cross_entropy", "ranking_length": 10,
        "renormalize_confidences": False, "maximum_positive_similarity": 0.8,
        "maximum_negative_similarity": -0.2, "use_maximum_negative_similarity": True, "scale_loss": True,
        "regularization_constant": 0.001, "negative_margin_scale": 0.8, "drop_rate_dialogue": 0.1,
        "drop_rate": 0.0, "drop_rate_label": 0.0, "drop_rate_attention": 0.0, "connection_density": 0.2,
        "use_sparse_input_dropout": True, "use_dense_input_dropout": True, "use_masked_language_model": False,
        "evaluate_every_number_of_epochs": 20, "evaluate_on_number_of_examples": 0,
        "tensorboard_log_directory": None, "tensorboard_log_level": "epoch", "checkpoint_model": False,
        "e2e_confidence_threshold": 0.5, "featurizers": [], "entity_recognition": True,
        "constrain_similarities": False, "model_confidence": "softmax", "BILOU_flag": True,
        "split_entities_by_comma": True, "max_history": None, "priority": 1, "use_gpu": True,
        "run_eagerly": False,
    },
    "RulePolicy": {
        "core_fallback_threshold": 0.3, "core_fallback_action_name": "action_default_fallback",
        "enable_fallback_prediction": True, "restrict_rules": True, "check_for_contradictions": True,
        "use_nlu_confidence_as_score": False, "enable_feature_string_compression": True, "priority": 6,
        "max_history": None,
    },
    "MemoizationPolicy": {
        "enable_feature_string_compression": True, "use_nlu_confidence_as_score": False, "max_history": 5,
        "priority": 3,
    },
}  # fmt: skip


def test_every_rasa_option_of_the_implemented_components_is_accepted() -> None:
    pipeline = tuple(Component(name, freeze(options)) for name, options in RASA_OPTIONS.items())
    policies = tuple(Component(name, freeze(options)) for name, options in RASA_POLICY_OPTIONS.items())
    config = Config(pipeline=pipeline, policies=policies)
    nlu = resolve_nlu(config)  # strict: raises on the first problem
    core = resolve_core(config)
    assert nlu.diet.transformer_size == 256 and nlu.diet.number_of_transformer_layers == 2
    assert nlu.diet.epochs == 300 and nlu.fallback_threshold == 0.3
    assert nlu.duckling[0].locale == "de_DE" and nlu.duckling[0].dimensions == ("time",)
    assert "DIETClassifier.evaluate_every_number_of_epochs" in nlu.ignored
    assert "LexicalSyntacticFeaturizer.features pos, pos2 (part-of-speech tags need spaCy)" in nlu.ignored
    lexical = next(f for f in nlu.featurizers if f.kind == "lexical")
    assert lexical.features == (("low", "title"), ("BOS", "EOS"), ("low",))
    assert core.ted is not None and core.ted.transformer_size == 128 and core.ted.epochs == 1
    assert "TEDPolicy.e2e_confidence_threshold" in core.ignored and "RulePolicy.restrict_rules" in core.ignored


RASA1_NAMES = """
    pipeline:
      - name: rasa.nlu.tokenizers.whitespace_tokenizer.WhitespaceTokenizer
      - name: CountVectorsFeaturizer
      - name: DIETClassifier
        droprate: 0.3
        num_transformer_layers: 3
        embed_dim: 16
        use_sparse_input_dropout: false
    policies:
      - name: TEDPolicy
        featurizer:
          - name: MaxHistoryTrackerFeaturizer
            max_history: 7
            state_featurizer:
              - name: BinarySingleStateFeaturizer
      - name: AugmentedMemoizationPolicy
        max_history: 4
"""


def test_rasa_1_and_2_names_are_read_as_their_new_names(tmp_path: Path) -> None:
    config, warnings = load(tmp_path, RASA1_NAMES)
    nlu, core = resolve_nlu(config), resolve_core(config)
    assert (nlu.diet.drop_rate, nlu.diet.number_of_transformer_layers, nlu.diet.embedding_dimension) == (0.3, 3, 16)
    assert nlu.diet.sparse_input_dropout is False
    assert core.ted is not None and core.ted.max_history == 7  # from the Rasa 2 featurizer list
    memo = core.policy("MemoizationPolicy")
    assert memo is not None and memo.max_history == 4  # AugmentedMemoizationPolicy's options carried over
    assert [(w.location.line if w.location else None, w.severity) for w in warnings] == [(16, "warning")]
    assert "AugmentedMemoizationPolicy" in warnings[0].message


# ------------------------------------------------ errors: file:line, valid forms, what was received


ERRORS = """
    pipeline:
      - name: WhitespaceTokenizer
      - name: CountVectorsFeaturizer
        analyzer: words
      - name: DIETClassifier
        loss_type: hinge
        transformer_size: 10
        number_of_attention_heads: 4
      - name: FallbackClassifier
        treshold: 0.5
    policies:
      - name: RulePolicy
        core_fallback_threshold: 1.5
      - name: TEDPolicy
        batch_size: [64, 0]
      - name: TEDPolicy
"""


def test_every_config_error_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    errors = config_errors(tmp_path, ERRORS)
    found = {(e.location.line if e.location else None): e for e in errors}
    assert sorted(found) == [4, 6, 7, 10, 13, 15, 16]
    assert "analyzer' must be one of word, char, char_wb; received 'words'" in found[4].message
    assert "loss_type' must be one of cross_entropy, softmax, margin; received 'hinge'" in found[6].message
    assert "transformer_size must be a multiple of number_of_attention_heads" in found[7].message
    assert "unknown option 'treshold'" in found[10].message and "threshold" in found[10].message
    assert "core_fallback_threshold' must be a number >= 0.0 and <= 1.0; received 1.5" in found[13].message
    assert "batch_size" in found[15].message and "[64, 0]" in found[15].message
    assert "listed twice" in found[16].message
    assert all(e.hint and e.code == "config" and e.location and e.location.file == "config.yml" for e in errors)


def test_the_training_path_raises_the_same_error_with_the_component_line(tmp_path: Path) -> None:
    root = write_project(tmp_path, project_files(RASA2_TED))
    project, _ = load_project(DirectorySource(root))
    broken = Config(policies=(Component("TEDPolicy", freeze({"epoch": 3}), Location("config.yml", 7)),))
    with pytest.raises(ConfigError) as caught:
        resolve_core(broken)
    assert caught.value.location == Location("config.yml", 7) and "unknown option 'epoch'" in caught.value.message
    resolution = Resolution(strict=False)
    resolve_core(broken, resolution)
    assert [f.option for f in resolution.errors] == ["epoch"]
    assert resolve_core(project.config).ted is not None


# ------------------------------------------------ components deltatrain cannot run


UNRUNNABLE = """
    pipeline:
      - name: SpacyNLP
        model: en_core_web_md
      - name: WhitespaceTokenizer
      - name: CountVectorsFeaturizer
      - name: my_package.sentiment.SentimentAnalyzer
      - name: DIETClassifier
      - name: MitieEntityExtractor
      - name: JiebaTokenizer
    policies:
      - name: RulePolicy
      - name: my_policies.CustomPolicy
"""


def test_custom_classes_and_jieba_are_errors_naming_the_line(tmp_path: Path) -> None:
    errors = config_errors(tmp_path, UNRUNNABLE)
    assert [(e.location.line if e.location else None) for e in errors] == [6, 9, 12]
    assert "'my_package.sentiment.SentimentAnalyzer' is a custom component class" in errors[0].message
    assert "deltatrain cannot run JiebaTokenizer (Chinese is written without spaces" in errors[1].message
    assert "'my_policies.CustomPolicy' is a custom policy class" in errors[2].message
    assert all("--ignore-unknown-components" in (e.hint or "") for e in errors)


def test_spacy_and_mitie_are_approximated_with_a_warning_saying_what_is_lost(tmp_path: Path) -> None:
    spacy_and_mitie = """
    pipeline:
      - name: SpacyNLP
        model: en_core_web_md
      - name: SpacyTokenizer
      - name: CountVectorsFeaturizer
      - name: DIETClassifier
      - name: SpacyEntityExtractor
        dimensions: ["PERSON"]
      - name: MitieEntityExtractor
    """
    config, warnings = load(tmp_path, spacy_and_mitie)
    assert [c.name for c in config.pipeline] == ["WhitespaceTokenizer", "CountVectorsFeaturizer", "DIETClassifier"]
    assert [(w.location.line if w.location else None) for w in warnings] == [2, 4, 7, 9]
    assert "SpacyNLP is not implemented by deltatrain: left out" in warnings[0].message
    assert "SpacyTokenizer is not implemented by deltatrain: WhitespaceTokenizer is used in its place" in warnings[1].message
    assert "its pretrained entities are not extracted" in warnings[2].message
    assert "MitieEntityExtractor is not implemented by deltatrain: DIETClassifier is used" in warnings[3].message


def test_ignore_unknown_components_trains_without_them_with_warnings(tmp_path: Path) -> None:
    config, warnings = load(tmp_path, UNRUNNABLE, ignore=True)
    assert [c.name for c in config.pipeline] == [
        "WhitespaceTokenizer", "CountVectorsFeaturizer", "DIETClassifier",
    ]
    assert [c.name for c in config.policies] == ["RulePolicy"]
    assert [(w.location.line if w.location else None) for w in warnings] == [2, 6, 8, 9, 12]
    assert [w for w in warnings if "left out (--ignore-unknown-components)" in w.message] == [
        warnings[1], warnings[3], warnings[4],
    ]
    assert "WhitespaceTokenizer is used in its place" in warnings[3].message  # JiebaTokenizer's stand-in


def test_a_typo_stays_an_error_even_with_the_flag(tmp_path: Path) -> None:
    config = "pipeline:\n  - name: CountVectorsFeaturizer\n  - name: DIETClasifier\n"
    [error] = config_errors(tmp_path, config, ignore=True)
    assert error.location == Location("config.yml", 3) and "unknown component 'DIETClasifier'" in error.message
    assert "DIETClassifier" in (error.hint or "") and "module path" in (error.hint or "")


def test_the_flag_reaches_validate_and_the_action(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.action import build_ci_argv

    root = write_project(tmp_path, project_files(UNRUNNABLE))
    cwd = os.getcwd()
    try:
        os.chdir(root)
        assert main(["data", "validate"], environ={}) == 1
        assert main(["data", "validate", "--ignore-unknown-components"], environ={}) == 0
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "config.yml:6: warning: 'my_package.sentiment.SentimentAnalyzer' is a custom component class" in err
    assert build_ci_argv({"ignore-unknown-components": "true"}) == ["ci", "--ignore-unknown-components"]
    assert build_ci_argv({"ignore-unknown-components": "false"}) == ["ci", "--no-ignore-unknown-components"]


# ------------------------------------------------ Rasa's example assistants


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="Rasa's example bots are not on this machine")
@pytest.mark.parametrize(
    "bot",
    ["concertbot", "e2ebot", "formbot", "knowledgebasebot", "moodbot", "reminderbot", "responseselectorbot", "rules"],
)
def test_rasa_example_bots_have_no_false_config_errors(bot: str) -> None:
    source = DirectorySource(EXAMPLES / bot)
    for ignore in (False, True):
        try:
            _, problems = load_project(source, ProjectPaths(ignore_unknown_components=ignore))
        except DataError as exc:
            problems = exc.problems
        errors = [p for p in problems if p.code == "config" and p.is_error]
        assert errors == []  # reminderbot's SpacyNLP and SpacyEntityExtractor are left out with a warning


RASA1_FALLBACK = """
    policies:
      - name: FallbackPolicy
        nlu_threshold: 0.4
        core_threshold: 0.25
        fallback_action_name: my_fallback_action
      - name: RulePolicy
        enable_fallback_prediction: false
"""


def test_fallback_policy_options_carry_over_to_rule_policy(tmp_path: Path) -> None:
    config, warnings = load(tmp_path, RASA1_FALLBACK)
    rule = resolve_core(config).policy("RulePolicy")
    assert rule is not None and rule.core_fallback_threshold == 0.25
    assert rule.core_fallback_action_name == "my_fallback_action"  # type: ignore[union-attr]
    assert rule.enable_fallback_prediction is False  # type: ignore[union-attr]
    [warning] = warnings
    assert warning.location == Location("config.yml", 2)
    assert "core_threshold as core_fallback_threshold" in warning.message
    assert "nlu_threshold are not carried over" in warning.message
