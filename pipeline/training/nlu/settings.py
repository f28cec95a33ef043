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
* ``DucklingEntityExtractor``: ``url``, ``dimensions``, ``locale``, ``timezone``,
  ``timeout``; kept in the model and used at parse time (:mod:`pipeline.duckling`)

Every option Rasa 2.x/3.x accepts for these components is accepted (Rasa 1/2
names read as today's, see :data:`pipeline.training.options.RENAMED_OPTIONS`);
those that make no sense here (GPU, tensorboard, negative sampling sizes,
buffers for growing vocabularies, ...) are listed in ``NluSettings.ignored``,
shown as one warning per component by ``deltatrain data validate`` and in the
trained model's summary. :func:`resolve_settings` is also what validation runs
(through :func:`pipeline.data.config.read_config`), so a config that validates
trains.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from pipeline.data.config import NLU_COMPONENTS, default_pipeline
from pipeline.data.model import Component, Config, thaw
from pipeline.duckling import DEFAULT_TIMEOUT, DucklingSettings, default_locale
from pipeline.errors import ConfigError
from pipeline.training.options import (
    Check,
    Resolution,
    check_batch_size,
    check_bool,
    check_str,
    choice,
    fail,
    float_option,
    int_option,
    read_options,
)

from .pretrained_source import MODEL_NAME
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
COMPONENT_NAMES = NLU_COMPONENTS


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
    #: DucklingEntityExtractor(s): the server asked at parse time
    duckling: tuple[DucklingSettings, ...] = ()
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
        data["duckling"] = tuple(DucklingSettings.from_config(d) for d in data.get("duckling", ()))
        return cls(**data)

    def compatibility_key(self) -> dict[str, Any]:
        """The settings that must not change for a finetune (everything but epochs
        and the inference-time fallback thresholds and Duckling server)."""
        config = self.get_config()
        config.pop("ignored")
        config.pop("fallback_threshold")
        config.pop("ambiguity_threshold")
        config.pop("duckling")
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
    """The epochs to train: enough for AUTO_MIN_STEPS steps, at most ``diet.epochs`` when set; exactly
    ``diet.epochs`` when early stopping is off.

    A config's ``epochs`` is Rasa's budget for Rasa's constant learning rate; deltatrain's decaying
    one converges sooner, and longer runs over-fit the sparse features: on HWU64 with Rasa's default
    sparse pipeline and ``epochs: 100``, 18 epochs scored the same intent accuracy and 1.5 points
    more entity F1 than stopping early at epoch 34, in half the time (bench/RESULTS.md, issue 18).
    """
    if diet.epochs is not None and not diet.early_stopping:
        return diet.epochs
    mean_batch = (diet.batch_size[0] + diet.batch_size[1]) / 2
    steps_per_epoch = max(1, math.ceil(num_examples / mean_batch))
    floor = AUTO_EPOCHS_PRETRAINED if pretrained else AUTO_EPOCHS
    epochs = int(min(AUTO_MAX_EPOCHS, max(floor, math.ceil(AUTO_MIN_STEPS / steps_per_epoch))))
    return epochs if diet.epochs is None else min(diet.epochs, epochs)


# ------------------------------------------------------------------- option parsing
# Every option Rasa 2.x/3.x knows for the implemented components is listed here once: in
# ``*_CHECKS`` when deltatrain uses it, in ``*_IGNORED`` (with a value check where Rasa has a
# closed set of values) when it means nothing here; anything else is an error with config.yml:line.


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
    names = (*LEXICAL_FEATURE_NAMES, *LEXICAL_SPACY_FEATURES)
    valid = "a list of windows (lists) of feature names from " + ", ".join(names)
    windows = thaw(value)
    if not isinstance(windows, list) or not windows or len(windows) % 2 == 0:
        raise fail(component, option, valid + " (an odd number of windows)", windows)
    for window in windows:
        if not isinstance(window, list) or any(name not in names for name in window):
            raise fail(component, option, valid, windows)
    return tuple(tuple(w) for w in windows)


def _string_list(component: str, option: str, value: Any) -> tuple[str, ...]:
    items = thaw(value)
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        raise fail(component, option, "a list of names, e.g. [number, time]", items)
    return tuple(items)


#: Part-of-speech features of LexicalSyntacticFeaturizer: they need spaCy's tagger, so they are ignored.
LEXICAL_SPACY_FEATURES = ("pos", "pos2")
_TOKENIZER_CHECKS: Mapping[str, Check] = {"token_pattern": check_str, "lowercase": check_bool}
_TOKENIZER_IGNORED: Mapping[str, Check | None] = {
    "intent_tokenization_flag": check_bool, "intent_split_symbol": check_str, "case_sensitive": check_bool,
}  # fmt: skip
_CVF_CHECKS: Mapping[str, Check] = {
    "analyzer": choice(*ANALYZERS),
    "min_ngram": int_option(1, 10),
    "max_ngram": int_option(1, 10),
    "lowercase": check_bool,
}
_CVF_IGNORED: Mapping[str, Check | None] = {
    "OOV_token": None, "OOV_words": None, "use_shared_vocab": check_bool, "additional_vocabulary_size": None,
    "min_df": None, "max_df": None, "max_features": None, "strip_accents": None, "stop_words": None,
    "token_pattern": None, "use_lemma": check_bool,
}  # fmt: skip
_REGEX_CHECKS: Mapping[str, Check] = {
    "case_sensitive": check_bool,
    "use_word_boundaries": check_bool,
    "use_regexes": check_bool,
    "use_lookup_tables": check_bool,
}
_REGEX_IGNORED: Mapping[str, Check | None] = {"number_additional_patterns": None}
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
    "use_sparse_input_dropout": check_bool,  # Rasa's name of DietOptions.sparse_input_dropout
    "sparse_input_dropout": check_bool,
    "entity_recognition": check_bool,
    "intent_classification": check_bool,
    "constrain_similarities": check_bool,
    "similarity_type": choice(*SIMILARITY_TYPES),
    "BILOU_flag": check_bool,
    "ranking_length": int_option(0),
    "max_sequence_length": int_option(8, 4096),
    "early_stopping": check_bool,
}
_DIET_IGNORED: Mapping[str, Check | None] = {
    "loss_type": choice("cross_entropy", "softmax", "margin"),
    "model_confidence": choice("softmax", "linear_norm", "cosine", "inner"),  # Rasa 2.3+ had all four
    "batch_strategy": choice("sequence", "balanced"),
    "tensorboard_log_level": choice("epoch", "batch"),
    "hidden_layers_sizes": None, "share_hidden_layers": None, "dense_dimension": None,
    "concat_dimension": None, "number_of_negative_examples": None, "maximum_positive_similarity": None,
    "maximum_negative_similarity": None, "use_maximum_negative_similarity": None, "scale_loss": None,
    "regularization_constant": None, "negative_margin_scale": None, "connection_density": None,
    "weight_sparsity": None, "use_dense_input_dropout": None, "dense_input_dropout": None,
    "use_masked_language_model": None, "evaluate_every_number_of_epochs": None,
    "evaluate_on_number_of_examples": None, "tensorboard_log_directory": None, "checkpoint_model": None,
    "featurizers": None, "split_entities_by_comma": None, "max_relative_position": None,
    "unidirectional_encoder": None, "use_key_relative_attention": None, "use_value_relative_attention": None,
    "renormalize_confidences": None, "random_seed": None,
}  # fmt: skip
_LANGUAGE_MODEL_IGNORED: Mapping[str, Check | None] = {"cache_dir": None, "model_name": None, "model_weights": None}
_FALLBACK_CHECKS: Mapping[str, Check] = {
    "threshold": float_option(0.0, 1.0),
    "ambiguity_threshold": float_option(0.0, 1.0),
}
_DUCKLING_CHECKS: Mapping[str, Check] = {
    "url": check_str,
    "dimensions": _string_list,
    "locale": check_str,
    "timezone": check_str,
    "timeout": float_option(0.0, 60.0, open_low=True),
}


def _resolve_duckling(component: Component, language: str, resolution: Resolution) -> DucklingSettings:
    opts = read_options(component, _DUCKLING_CHECKS, {}, resolution)
    return DucklingSettings(
        url=opts.get("url"),
        dimensions=opts.get("dimensions"),
        locale=opts.get("locale") or default_locale(language),
        timezone=opts.get("timezone"),
        timeout=opts.get("timeout", DEFAULT_TIMEOUT),
    )


def resolve_settings(config: Config, resolution: Resolution | None = None) -> NluSettings:
    """Resolve ``config`` into :class:`NluSettings`; an empty pipeline means the default
    (:func:`pipeline.data.config.default_pipeline`).

    Without ``resolution`` the first problem raises a ConfigError; with a non-strict one every
    problem is recorded there (and a usable default taken in its place).
    """
    res = resolution or Resolution()
    pipeline = config.pipeline or default_pipeline(config.language)
    token_pattern, tokenizer_lowercase = DEFAULT_TOKEN_PATTERN, False
    featurizers: list[FeaturizerSpec] = []
    diet: DietOptions | None = None
    synonyms = False
    fallback: float | None = None
    ambiguity = 0.1
    response_selector = False
    language_model: str | None = None
    language_model_layers = LANGUAGE_MODEL_LAYERS
    duckling: list[DucklingSettings] = []
    for component in pipeline:
        name = component.name
        if name == "WhitespaceTokenizer":
            opts = read_options(component, _TOKENIZER_CHECKS, _TOKENIZER_IGNORED, res)
            token_pattern = opts.get("token_pattern", token_pattern)
            tokenizer_lowercase = opts.get("lowercase", tokenizer_lowercase)
        elif name == "CountVectorsFeaturizer":
            opts = read_options(component, _CVF_CHECKS, _CVF_IGNORED, res)
            analyzer = opts.get("analyzer", "word")
            low, high = opts.get("min_ngram", 1), opts.get("max_ngram", 1)
            if low > high:
                res.error(fail(name, "min_ngram", f"<= max_ngram ({high})", low), component, "min_ngram")
                low = high
            spec = FeaturizerSpec(
                "count_vectors", f"{analyzer}_{low}_{high}", analyzer, low, high, opts.get("lowercase", True)
            )
            featurizers.append(spec)
        elif name == "RegexFeaturizer":
            opts = read_options(component, _REGEX_CHECKS, _REGEX_IGNORED, res)
            featurizers.append(FeaturizerSpec("regex", "regex", **opts))
        elif name == "LexicalSyntacticFeaturizer":
            opts = read_options(component, {"features": _lexical_features}, {}, res)
            windows = opts.get("features", DEFAULT_LEXICAL_FEATURES)
            if any(f in LEXICAL_SPACY_FEATURES for window in windows for f in window):
                res.ignore(component, "features pos, pos2 (part-of-speech tags need spaCy)")
                windows = tuple(tuple(f for f in window if f not in LEXICAL_SPACY_FEATURES) for window in windows)
            featurizers.append(FeaturizerSpec("lexical", "lexical", features=windows))
        elif name == "LanguageModelFeaturizer":
            opts = read_options(component, {"layers": int_option(1, 6)}, _LANGUAGE_MODEL_IGNORED, res)
            res.ignored = [
                (c, note) for c, note in res.ignored if c is not component or note not in ("model_name", "model_weights")
            ]
            for key in ("model_name", "model_weights"):
                if key in component.options and thaw(component.options[key]) not in (None, "", LANGUAGE_MODEL):
                    res.ignore(
                        component, f"{key}={thaw(component.options[key])!r} (only {LANGUAGE_MODEL} ships with deltatrain)"
                    )
            language_model = LANGUAGE_MODEL
            language_model_layers = opts.get("layers", LANGUAGE_MODEL_LAYERS)
        elif name == "DIETClassifier":
            if diet is not None:
                res.error(
                    ConfigError(
                        "the NLU pipeline may contain one DIETClassifier; received a second one",
                        hint="remove the duplicate '- name: DIETClassifier'",
                    ),
                    component,
                )
                continue
            opts = read_options(component, _DIET_CHECKS, _DIET_IGNORED, res)
            if "use_sparse_input_dropout" in opts:
                opts["sparse_input_dropout"] = opts.pop("use_sparse_input_dropout")
            diet = DietOptions(**opts)
            if diet.transformer_size % diet.number_of_attention_heads:
                res.error(
                    ConfigError(
                        "DIETClassifier: transformer_size must be a multiple of number_of_attention_heads;"
                        f" received transformer_size={diet.transformer_size},"
                        f" number_of_attention_heads={diet.number_of_attention_heads}",
                        hint="e.g. transformer_size: 128 with number_of_attention_heads: 4",
                    ),
                    component,
                    "transformer_size",
                )
            if not (diet.entity_recognition or diet.intent_classification):
                res.error(
                    ConfigError(
                        "DIETClassifier: at least one of intent_classification and entity_recognition must be true;"
                        " received both false",
                        hint="set intent_classification: true",
                    ),
                    component,
                )
        elif name == "EntitySynonymMapper":
            read_options(component, {}, {}, res)
            synonyms = True
        elif name == "FallbackClassifier":
            opts = read_options(component, _FALLBACK_CHECKS, {}, res)
            fallback = opts.get("threshold", 0.3)
            ambiguity = opts.get("ambiguity_threshold", 0.1)
        elif name == "DucklingEntityExtractor":
            duckling.append(_resolve_duckling(component, config.language, res))
        elif name == "ResponseSelector":
            # ---- ResponseSelector: options checked by .selector (retrieval intents) ----
            from .selector import resolve_selector_options  # noqa: PLC0415 - .selector imports this module

            resolve_selector_options(component, res)
            response_selector = True
            # ---- end ResponseSelector ----
        else:
            res.error(
                ConfigError(
                    f"unknown NLU component '{name}'; valid components are {', '.join(COMPONENT_NAMES)};"
                    f" received '{name}'",
                    hint="map it to one of the valid components in config.yml",
                ),
                component,
            )
    if not featurizers and not language_model:
        res.error(
            ConfigError(
                "the NLU pipeline has no featurizer; add at least one of " + ", ".join(_FEATURIZERS)
                + f"; received {', '.join(c.name for c in pipeline) or 'an empty pipeline'}",
                hint="add '- name: CountVectorsFeaturizer' to the pipeline",
            )
        )
    names = [f.name for f in featurizers]
    featurizers = [
        replace(f, name=f"{f.name}_{names[:i].count(f.name)}") if names.count(f.name) > 1 else f
        for i, f in enumerate(featurizers)
    ]
    return NluSettings(
        language=config.language,
        token_pattern=token_pattern,
        tokenizer_lowercase=tokenizer_lowercase,
        featurizers=tuple(featurizers),
        language_model=language_model,
        language_model_layers=language_model_layers,
        diet=diet or DietOptions(),
        synonyms=synonyms,
        fallback_threshold=fallback,
        ambiguity_threshold=ambiguity,
        response_selector=response_selector,
        duckling=tuple(duckling),
        ignored=res.ignored_notes(),
    )
