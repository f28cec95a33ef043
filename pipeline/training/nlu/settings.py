"""NLU settings resolved from ``config.pipeline`` (Rasa component names and options).

Pure Python, no TensorFlow. :func:`resolve_settings` turns the config into a
frozen :class:`NluSettings`; ``get_config()``/``from_config()`` round-trip it
through JSON for the saved model and for the finetune compatibility check.

Accepted components and their options (Rasa's names; anything else is a
:class:`~pipeline.errors.ConfigError` listing the valid names):

* ``WhitespaceTokenizer``: ``token_pattern``, ``lowercase`` (deltatrain)
* ``CountVectorsFeaturizer``: ``analyzer`` (word | char | char_wb), ``min_ngram``,
  ``max_ngram``, ``lowercase``
* ``RegexFeaturizer``: ``case_sensitive``, ``use_word_boundaries``, ``use_regexes``,
  ``use_lookup_tables``
* ``LexicalSyntacticFeaturizer``: ``features`` (list of windows of feature names)
* ``DIETClassifier``: see :class:`DietOptions`
* ``LanguageModelFeaturizer``: dense pretrained features from all-MiniLM-L6-v2
  (:mod:`.pretrained`); ``model_name``/``model_weights`` name other models in
  Rasa and are noted and replaced by this one; ``layers`` (deltatrain, 1-6,
  default 2): how many of its transformer layers to run
* ``EntitySynonymMapper``, ``FallbackClassifier``: ``threshold``, ``ambiguity_threshold``
* ``ResponseSelector``: see :mod:`.selector` (retrieval intents)

Rasa options that make no sense here (GPU, tensorboard, negative sampling
sizes, buffers for growing vocabularies, ...) are accepted and listed in
``NluSettings.ignored``; the trained model's summary reports them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

from pipeline.data.config import default_pipeline
from pipeline.data.model import Component, Config, thaw
from pipeline.errors import ConfigError
from pipeline.training.options import (
    Check,
    check_batch_size,
    check_bool,
    check_str,
    fail,
    float_option,
    int_option,
)

from .pretrained import MODEL_NAME
from .tokenizer import DEFAULT_TOKEN_PATTERN

LEXICAL_FEATURE_NAMES = (
    "BOS", "EOS", "low", "upper", "title", "digit",
    "prefix5", "prefix4", "prefix3", "prefix2", "prefix1",
    "suffix5", "suffix4", "suffix3", "suffix2", "suffix1",
)  # fmt: skip
DEFAULT_LEXICAL_FEATURES = (
    ("low", "title", "upper"),
    ("BOS", "EOS", "low", "upper", "title", "digit", "prefix5", "prefix2", "suffix5", "suffix3", "suffix2"),
    ("low", "title", "upper"),
)
ANALYZERS = ("word", "char", "char_wb")
#: The pretrained model behind LanguageModelFeaturizer ...
LANGUAGE_MODEL = MODEL_NAME
#: ... and how many of its 6 transformer layers run by default: on HWU64 the first 2 give the
#: accuracy of all 6 at a third of the cost (bench/RESULTS.md); parse stays near 5 ms.
LANGUAGE_MODEL_LAYERS = 2
SIMILARITY_TYPES = ("auto", "inner", "cosine")

_FEATURIZERS = ("CountVectorsFeaturizer", "RegexFeaturizer", "LexicalSyntacticFeaturizer", "LanguageModelFeaturizer")
COMPONENT_NAMES = (
    "WhitespaceTokenizer",
    *_FEATURIZERS,
    "DIETClassifier",
    "EntitySynonymMapper",
    "ResponseSelector",
    "FallbackClassifier",
)


@dataclass(frozen=True)
class FeaturizerSpec:
    """One sparse featurizer: ``kind`` is ``count_vectors``, ``regex`` or ``lexical``."""

    kind: str
    name: str  # unique within the pipeline: "word", "char_wb_1_4", "regex", "lexical"
    analyzer: str = "word"
    min_ngram: int = 1
    max_ngram: int = 1
    lowercase: bool = True
    case_sensitive: bool = True
    use_word_boundaries: bool = True
    use_regexes: bool = True
    use_lookup_tables: bool = True
    features: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class DietOptions:
    """DIETClassifier options (Rasa's names; defaults chosen by ``bench/nlu.py``).

    ``epochs`` left unset means :func:`auto_epochs`: 18 on data sets with
    thousands of examples (15 with pretrained features), more (up to Rasa's
    300) on small ones.
    """

    epochs: int | None = None
    batch_size: tuple[int, int] = (64, 256)
    learning_rate: float = 0.005
    transformer_size: int = 128
    number_of_transformer_layers: int = 1
    number_of_attention_heads: int = 4
    embedding_dimension: int = 32
    drop_rate: float = 0.2
    drop_rate_attention: float = 0.0
    sparse_input_dropout: bool = True
    entity_recognition: bool = True
    intent_classification: bool = True
    constrain_similarities: bool = True
    similarity_type: str = "auto"
    BILOU_flag: bool = True
    ranking_length: int = 10
    max_sequence_length: int = 128
    early_stopping: bool = True


@dataclass(frozen=True)
class NluSettings:
    """Everything that decides how the NLU model is built and trained."""

    language: str = "en"
    token_pattern: str = DEFAULT_TOKEN_PATTERN
    tokenizer_lowercase: bool = False
    featurizers: tuple[FeaturizerSpec, ...] = ()
    #: pretrained dense features (LanguageModelFeaturizer): model name and layers run; None = none
    language_model: str | None = None
    language_model_layers: int = LANGUAGE_MODEL_LAYERS
    diet: DietOptions = field(default_factory=DietOptions)
    synonyms: bool = True
    fallback_threshold: float | None = None
    ambiguity_threshold: float = 0.1
    response_selector: bool = False
    ignored: tuple[str, ...] = field(default=(), compare=False)

    def get_config(self) -> dict[str, Any]:
        """JSON-able form; :meth:`from_config` inverts it."""
        config = asdict(self)
        config["ignored"] = list(self.ignored)
        return thaw(config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "NluSettings":
        data = dict(config)
        data["featurizers"] = tuple(
            FeaturizerSpec(**{**f, "features": tuple(tuple(w) for w in f.get("features", ()))})
            for f in data.get("featurizers", ())
        )
        diet = dict(data.get("diet", {}))
        if "batch_size" in diet:
            diet["batch_size"] = tuple(diet["batch_size"])
        data["diet"] = DietOptions(**diet)
        data["ignored"] = tuple(data.get("ignored", ()))
        return cls(**data)

    def compatibility_key(self) -> dict[str, Any]:
        """The settings that must not change for a finetune (everything but epochs
        and the inference-time fallback thresholds)."""
        config = self.get_config()
        config.pop("ignored")
        config.pop("fallback_threshold")
        config.pop("ambiguity_threshold")
        config["diet"].pop("epochs")
        return config


#: Epochs when DIETClassifier sets none: enough on large data sets (bench/RESULTS.md);
#: fewer with pretrained features, which converge sooner (15 vs 18: same accuracy on HWU64) ...
AUTO_EPOCHS = 18
AUTO_EPOCHS_PRETRAINED = 15
#: ... but at least this many optimizer steps on small ones ...
AUTO_MIN_STEPS = 600
#: ... and never more than Rasa's default for DIETClassifier.
AUTO_MAX_EPOCHS = 300


def auto_epochs(diet: DietOptions, num_examples: int, *, pretrained: bool = False) -> int:
    """The epochs to train: ``diet.epochs`` when set, else enough for AUTO_MIN_STEPS steps."""
    if diet.epochs is not None:
        return diet.epochs
    mean_batch = (diet.batch_size[0] + diet.batch_size[1]) / 2
    steps_per_epoch = max(1, math.ceil(num_examples / mean_batch))
    floor = AUTO_EPOCHS_PRETRAINED if pretrained else AUTO_EPOCHS
    return int(min(AUTO_MAX_EPOCHS, max(floor, math.ceil(AUTO_MIN_STEPS / steps_per_epoch))))


# ------------------------------------------------------------------- option parsing

def _choice(*choices: str) -> Check:
    def check(component: str, option: str, value: Any) -> str:
        if value not in choices:
            raise fail(component, option, "one of " + ", ".join(choices), value)
        return str(value)

    return check


def _per_text(check: Check) -> Check:
    """Rasa allows ``{"text": n, "label": m}`` for some sizes; we use the text size."""

    def wrapped(component: str, option: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            if "text" not in value:
                raise fail(component, option, "a number or a mapping with a 'text' key", thaw(value))
            value = value["text"]
        return check(component, option, value)

    return wrapped


def _lexical_features(component: str, option: str, value: Any) -> tuple[tuple[str, ...], ...]:
    valid = "a list of windows (lists) of feature names from " + ", ".join(LEXICAL_FEATURE_NAMES)
    windows = thaw(value)
    if not isinstance(windows, list) or not windows or len(windows) % 2 == 0:
        raise fail(component, option, valid + " (an odd number of windows)", windows)
    for window in windows:
        if not isinstance(window, list) or any(name not in LEXICAL_FEATURE_NAMES for name in window):
            raise fail(component, option, valid, windows)
    return tuple(tuple(w) for w in windows)


def _options(
    component: Component,
    checks: Mapping[str, Check],
    ignored_names: Sequence[str],
    ignored: list[str],
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in component.options.items():
        if key in checks:
            if value is not None:
                result[key] = checks[key](component.name, key, value)
        elif key in ignored_names or key in _ALWAYS_IGNORED:
            ignored.append(f"{component.name}.{key}")
        else:
            valid = ", ".join(sorted(checks))
            raise ConfigError(
                f"{component.name}: unknown option '{key}'; valid options are {valid}; received {key}={thaw(value)!r}",
                hint=f"remove '{key}' or fix its spelling under '- name: {component.name}'",
            )
    return result


_ALWAYS_IGNORED = ("alias", "use_gpu", "random_seed")
_CVF_CHECKS: Mapping[str, Check] = {
    "analyzer": _choice(*ANALYZERS),
    "min_ngram": int_option(1, 10),
    "max_ngram": int_option(1, 10),
    "lowercase": check_bool,
}
_CVF_IGNORED = (
    "OOV_token", "OOV_words", "use_shared_vocab", "additional_vocabulary_size", "min_df", "max_df",
    "max_features", "strip_accents", "stop_words", "token_pattern", "use_lemma",
)  # fmt: skip
_REGEX_CHECKS: Mapping[str, Check] = {
    "case_sensitive": check_bool,
    "use_word_boundaries": check_bool,
    "use_regexes": check_bool,
    "use_lookup_tables": check_bool,
}
_DIET_CHECKS: Mapping[str, Check] = {
    "epochs": int_option(0),
    "batch_size": check_batch_size,
    "learning_rate": float_option(0.0, 1.0, open_low=True),
    "transformer_size": _per_text(int_option(4, 4096)),
    "number_of_transformer_layers": _per_text(int_option(0, 24)),
    "number_of_attention_heads": int_option(1, 64),
    "embedding_dimension": int_option(2, 1024),
    "drop_rate": float_option(0.0, 0.95),
    "drop_rate_attention": float_option(0.0, 0.95),
    "sparse_input_dropout": check_bool,
    "entity_recognition": check_bool,
    "intent_classification": check_bool,
    "constrain_similarities": check_bool,
    "similarity_type": _choice(*SIMILARITY_TYPES),
    "BILOU_flag": check_bool,
    "ranking_length": int_option(0),
    "max_sequence_length": int_option(8, 4096),
    "early_stopping": check_bool,
    "loss_type": _choice("cross_entropy", "softmax"),
    "model_confidence": _choice("softmax"),
}
_DIET_IGNORED = (
    "hidden_layers_sizes", "dense_dimension", "concat_dimension", "number_of_negative_examples",
    "maximum_positive_similarity", "maximum_negative_similarity", "use_maximum_negative_similarity",
    "scale_loss", "regularization_constant", "negative_margin_scale", "connection_density",
    "weight_sparsity", "dense_input_dropout", "use_masked_language_model", "evaluate_every_number_of_epochs",
    "evaluate_on_number_of_examples", "tensorboard_log_directory", "tensorboard_log_level",
    "checkpoint_model", "batch_strategy", "split_entities_by_comma", "max_relative_position",
    "unidirectional_encoder", "use_key_relative_attention", "use_value_relative_attention",
    "renormalize_confidences", "featurizers", "run_eagerly", "share_hidden_layers",
)  # fmt: skip


def resolve_settings(config: Config) -> NluSettings:
    """Resolve ``config`` into :class:`NluSettings`; an empty pipeline means the default
    (:func:`pipeline.data.config.default_pipeline`)."""
    pipeline = config.pipeline or default_pipeline(config.language)
    ignored: list[str] = []
    token_pattern, tokenizer_lowercase = DEFAULT_TOKEN_PATTERN, False
    featurizers: list[FeaturizerSpec] = []
    diet: DietOptions | None = None
    synonyms = False
    fallback: float | None = None
    ambiguity = 0.1
    response_selector = False
    language_model: str | None = None
    language_model_layers = LANGUAGE_MODEL_LAYERS
    for component in pipeline:
        name = component.name
        if name == "WhitespaceTokenizer":
            opts = _options(
                component,
                {"token_pattern": check_str, "lowercase": check_bool},
                ("intent_tokenization_flag", "intent_split_symbol", "case_sensitive"),
                ignored,
            )
            token_pattern = opts.get("token_pattern", token_pattern)
            tokenizer_lowercase = opts.get("lowercase", tokenizer_lowercase)
        elif name == "CountVectorsFeaturizer":
            opts = _options(component, _CVF_CHECKS, _CVF_IGNORED, ignored)
            analyzer = opts.get("analyzer", "word")
            low, high = opts.get("min_ngram", 1), opts.get("max_ngram", 1)
            if low > high:
                raise fail(name, "min_ngram", f"<= max_ngram ({high})", low)
            spec = FeaturizerSpec(
                "count_vectors", f"{analyzer}_{low}_{high}", analyzer, low, high, opts.get("lowercase", True)
            )
            featurizers.append(spec)
        elif name == "RegexFeaturizer":
            opts = _options(component, _REGEX_CHECKS, ("number_additional_patterns",), ignored)
            featurizers.append(FeaturizerSpec("regex", "regex", **opts))
        elif name == "LexicalSyntacticFeaturizer":
            opts = _options(component, {"features": _lexical_features}, (), ignored)
            featurizers.append(FeaturizerSpec("lexical", "lexical", features=opts.get("features", DEFAULT_LEXICAL_FEATURES)))
        elif name == "LanguageModelFeaturizer":
            named = {k: v for k, v in component.options.items() if k not in ("model_name", "model_weights")}
            opts = _options(replace(component, options=named), {"layers": int_option(1, 6)}, ("cache_dir",), ignored)
            for key in ("model_name", "model_weights"):
                if key in component.options and thaw(component.options[key]) not in (None, "", LANGUAGE_MODEL):
                    ignored.append(
                        f"{name}.{key}={thaw(component.options[key])!r} (only {LANGUAGE_MODEL} ships with deltatrain)"
                    )
            language_model = LANGUAGE_MODEL
            language_model_layers = opts.get("layers", LANGUAGE_MODEL_LAYERS)
        elif name == "DIETClassifier":
            if diet is not None:
                raise ConfigError(
                    "the NLU pipeline may contain one DIETClassifier; received a second one",
                    hint="remove the duplicate '- name: DIETClassifier'",
                )
            opts = _options(component, _DIET_CHECKS, _DIET_IGNORED, ignored)
            opts.pop("loss_type", None)
            opts.pop("model_confidence", None)
            diet = DietOptions(**opts)
        elif name == "EntitySynonymMapper":
            _options(component, {}, (), ignored)
            synonyms = True
        elif name == "FallbackClassifier":
            opts = _options(
                component,
                {"threshold": float_option(0.0, 1.0), "ambiguity_threshold": float_option(0.0, 1.0)},
                (),
                ignored,
            )
            fallback = opts.get("threshold", 0.3)
            ambiguity = opts.get("ambiguity_threshold", 0.1)
        elif name == "ResponseSelector":
            # ---- ResponseSelector: options checked by .selector (retrieval intents; the selector helper's) ----
            from .selector import resolve_selector_options  # noqa: PLC0415 - .selector imports this module

            resolve_selector_options(component, ignored)
            response_selector = True
            # ---- end ResponseSelector ----
        else:
            raise ConfigError(
                f"unknown NLU component '{name}'; valid components are {', '.join(COMPONENT_NAMES)};"
                f" received '{name}'",
                hint="map it to one of the valid components in config.yml",
            )
    if not featurizers and not language_model:
        raise ConfigError(
            "the NLU pipeline has no featurizer; add at least one of " + ", ".join(_FEATURIZERS)
            + f"; received {', '.join(c.name for c in pipeline) or 'an empty pipeline'}",
            hint="add '- name: CountVectorsFeaturizer' to the pipeline",
        )
    names = [f.name for f in featurizers]
    featurizers = [
        replace(f, name=f"{f.name}_{names[:i].count(f.name)}") if names.count(f.name) > 1 else f
        for i, f in enumerate(featurizers)
    ]
    diet = diet or DietOptions()
    if diet.transformer_size % diet.number_of_attention_heads:
        raise ConfigError(
            "DIETClassifier: transformer_size must be a multiple of number_of_attention_heads;"
            f" received transformer_size={diet.transformer_size},"
            f" number_of_attention_heads={diet.number_of_attention_heads}",
        )
    if not (diet.entity_recognition or diet.intent_classification):
        raise ConfigError(
            "DIETClassifier: at least one of intent_classification and entity_recognition must be true;"
            " received both false",
        )
    return NluSettings(
        language=config.language,
        token_pattern=token_pattern,
        tokenizer_lowercase=tokenizer_lowercase,
        featurizers=tuple(featurizers),
        language_model=language_model,
        language_model_layers=language_model_layers,
        diet=diet,
        synonyms=synonyms,
        fallback_threshold=fallback,
        ambiguity_threshold=ambiguity,
        response_selector=response_selector,
        ignored=tuple(ignored),
    )
