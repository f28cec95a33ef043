"""config.yml: Rasa component and policy names mapped to deltatrain's own.

deltatrain implements a fixed set of components. Rasa names we implement are
kept; Rasa names we know but do not implement are either replaced by our
equivalent or ignored, with a note that becomes a validation warning; any
other name is an error listing the supported names (it is usually a typo).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from pipeline.data.model import Component, Config, freeze
from pipeline.data.readers import Collector, _kind
from pipeline.data.yamlio import YMap, YSeq

NLU_COMPONENTS = (
    "WhitespaceTokenizer",
    "RegexFeaturizer",
    "LexicalSyntacticFeaturizer",
    "CountVectorsFeaturizer",
    "LanguageModelFeaturizer",
    "DIETClassifier",
    "EntitySynonymMapper",
    "ResponseSelector",
    "FallbackClassifier",
)
POLICIES = ("RulePolicy", "MemoizationPolicy", "TEDPolicy")

#: Rasa names we know but do not implement -> our replacement (None: ignored).
NLU_SUBSTITUTES: Mapping[str, str | None] = {
    "SpacyNLP": None,
    "MitieNLP": None,
    "HFTransformersNLP": None,
    "SpacyTokenizer": "WhitespaceTokenizer",
    "MitieTokenizer": "WhitespaceTokenizer",
    "JiebaTokenizer": "WhitespaceTokenizer",
    "LanguageModelTokenizer": "WhitespaceTokenizer",
    "ConveRTTokenizer": "WhitespaceTokenizer",
    "SpacyFeaturizer": None,
    "MitieFeaturizer": None,
    "ConveRTFeaturizer": "LanguageModelFeaturizer",
    "CRFEntityExtractor": "DIETClassifier",
    "SklearnIntentClassifier": "DIETClassifier",
    "MitieIntentClassifier": "DIETClassifier",
    "EmbeddingIntentClassifier": "DIETClassifier",
    "KeywordIntentClassifier": "DIETClassifier",
    "LogisticRegressionClassifier": "DIETClassifier",
    "MitieEntityExtractor": "DIETClassifier",
    "SpacyEntityExtractor": None,
    "DucklingEntityExtractor": None,
    "DucklingHTTPExtractor": None,
    "RegexEntityExtractor": None,
}
POLICY_SUBSTITUTES: Mapping[str, str | None] = {
    "AugmentedMemoizationPolicy": "MemoizationPolicy",
    "UnexpecTEDIntentPolicy": None,
    "KerasPolicy": "TEDPolicy",
    "FormPolicy": "RulePolicy",
    "MappingPolicy": "RulePolicy",
    "FallbackPolicy": "RulePolicy",
    "TwoStageFallbackPolicy": "RulePolicy",
    "SklearnPolicy": "TEDPolicy",
}

#: Rasa 3.x's default pipeline (used when config leaves it empty) ...
DEFAULT_PIPELINE: tuple[tuple[str, dict[str, Any]], ...] = (
    ("WhitespaceTokenizer", {}),
    ("RegexFeaturizer", {}),
    ("LexicalSyntacticFeaturizer", {}),
    ("CountVectorsFeaturizer", {}),
    ("CountVectorsFeaturizer", {"analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4}),
    ("DIETClassifier", {}),
    ("EntitySynonymMapper", {}),
    ("FallbackClassifier", {"threshold": 0.3, "ambiguity_threshold": 0.1}),
)
#: ... plus, for English, pretrained dense features from all-MiniLM-L6-v2 (bench/RESULTS.md).
ENGLISH_LANGUAGE_MODEL: tuple[str, dict[str, Any]] = ("LanguageModelFeaturizer", {})


def _is_english(language: str) -> bool:
    return language.lower().replace("-", "_").split("_")[0] == "en"


def default_pipeline(language: str) -> tuple[Component, ...]:
    """The pipeline used when config.yml has none: Rasa's default, with pretrained
    features before the classifier when the language is English (the model's language)."""
    components = list(DEFAULT_PIPELINE)
    if _is_english(language):
        classifier = next(i for i, (name, _) in enumerate(components) if name == "DIETClassifier")
        components.insert(classifier, ENGLISH_LANGUAGE_MODEL)
    return _components(components)


def _components(specs: Sequence[tuple[str, dict[str, Any]]]) -> tuple[Component, ...]:
    return tuple(Component(name, freeze(options)) for name, options in specs)


DEFAULT_POLICIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("MemoizationPolicy", {}),
    ("RulePolicy", {}),
    ("TEDPolicy", {"max_history": 5, "epochs": 100}),
)

# option -> (kind, minimum, maximum); kind "int" or "float"; bounds inclusive, None = open
NUMERIC_OPTIONS: Mapping[str, tuple[str, float | None, float | None]] = {
    "epochs": ("int", 1, None),
    "batch_size": ("int", 1, None),
    "learning_rate": ("float", 0.0, None),
    "threshold": ("float", 0.0, 1.0),
    "ambiguity_threshold": ("float", 0.0, 1.0),
    "core_fallback_threshold": ("float", 0.0, 1.0),
    "max_history": ("int", 1, None),
    "min_ngram": ("int", 1, None),
    "max_ngram": ("int", 1, None),
    "number_of_transformer_layers": ("int", 0, None),
    "transformer_size": ("int", 1, None),
    "embedding_dimension": ("int", 1, None),
    "drop_rate": ("float", 0.0, 1.0),
    "random_seed": ("int", 0, None),
    "layers": ("int", 1, 6),
}

#: A sensible value per option, shown in fix hints.
_OPTION_EXAMPLES: Mapping[str, float] = {
    "epochs": 100,
    "batch_size": 64,
    "learning_rate": 0.001,
    "threshold": 0.3,
    "ambiguity_threshold": 0.1,
    "core_fallback_threshold": 0.3,
    "max_history": 5,
    "drop_rate": 0.2,
    "layers": 2,
}


def read_config(doc: Any, out: Collector) -> Config:
    """Read config.yml (already parsed); problems go to ``out``."""
    if doc is None:
        doc = YMap()
    if not isinstance(doc, dict):
        out.error(f"config must be a mapping with 'pipeline' and 'policies', got {_kind(doc)}", 1)
        doc = YMap()
    language = doc.get("language") or "en"
    notes: list[str] = []
    pipeline, pipeline_default = _read_components(
        doc, "pipeline", NLU_COMPONENTS, NLU_SUBSTITUTES, default_pipeline(str(language)), out, notes
    )
    if not _is_english(str(language)):
        for component in pipeline:
            if component.name == "LanguageModelFeaturizer":
                out.warning(
                    f"LanguageModelFeaturizer uses an English model (all-MiniLM-L6-v2); the language is '{language}'",
                    component.location.line if component.location else None,
                    "remove LanguageModelFeaturizer for a non-English assistant, or set 'language: en'",
                )
    policies, policies_default = _read_components(
        doc, "policies", POLICIES, POLICY_SUBSTITUTES, _components(DEFAULT_POLICIES), out, notes
    )
    return Config(
        language=str(language),
        pipeline=pipeline,
        policies=policies,
        recipe=str(doc.get("recipe") or "default.v1"),
        assistant_id=None if doc.get("assistant_id") is None else str(doc.get("assistant_id")),
        pipeline_is_default=pipeline_default,
        policies_is_default=policies_default,
        notes=tuple(notes),
    )


def _read_components(
    doc: Any,
    key: str,
    supported: tuple[str, ...],
    substitutes: Mapping[str, str | None],
    defaults: tuple[Component, ...],
    out: Collector,
    notes: list[str],
) -> tuple[tuple[Component, ...], bool]:
    raw = doc.get(key)
    if not raw:
        return defaults, True
    if not isinstance(raw, list):
        out.error(f"'{key}' must be a list of components, got {_kind(raw)}", _key_line(doc, key))
        return (), False
    result: list[Component] = []
    stand_ins: list[Component] = []  # replacements for unimplemented components, in ``result`` too
    for index, entry in enumerate(raw):
        line = raw.item_line(index) if isinstance(raw, YSeq) else _key_line(doc, key)
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            out.error(f"each entry of '{key}' needs a 'name', got {_kind(entry)}", line, "write '- name: ComponentName'")
            continue
        name = entry["name"].rsplit(".", 1)[-1] if "." in entry["name"] else entry["name"]
        options = {k: v for k, v in entry.items() if k != "name"}
        if name in substitutes:
            replacement = substitutes[name]
            if replacement is None:
                notes.append(f"{out.file}:{line}: {name} is not implemented by deltatrain and is ignored")
                continue
            notes.append(f"{out.file}:{line}: {name} is not implemented by deltatrain; {replacement} is used instead")
            if any(c.name == replacement for c in result):
                continue
            substitute = Component(replacement, freeze({}), out.at(line))
            stand_ins.append(substitute)
            result.append(substitute)
            continue
        elif name not in supported:
            out.error(
                f"unknown {'policy' if key == 'policies' else 'component'} '{entry['name']}' in '{key}'",
                line,
                f"supported names are {', '.join(supported)}; received '{entry['name']}'",
            )
            continue
        for option, value in options.items():
            _check_numeric(name, option, value, entry, line, out)
        _check_ngrams(name, options, line, out)
        component = Component(name, freeze(options), out.at(line))
        # Named explicitly after a stand-in for it: take the stand-in's place instead of doubling it.
        stand_in = next((c for c in stand_ins if c.name == name), None)
        if stand_in is not None:
            stand_ins.remove(stand_in)
            result[next(i for i, c in enumerate(result) if c is stand_in)] = component
        else:
            result.append(component)
    return tuple(result), False


def _check_numeric(component: str, option: str, value: Any, entry: Any, line: int, out: Collector) -> None:
    spec = NUMERIC_OPTIONS.get(option)
    if spec is None or value is None:
        return
    if option == "batch_size" and isinstance(value, list) and len(value) == 2:
        for item in value:  # Rasa's linear batch-size ramp: [64, 256]
            _check_numeric(component, option, item, entry, line, out)
        return
    kind, low, high = spec
    option_line = entry.key_line(option) if isinstance(entry, YMap) else line
    if option == "epochs" and isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return  # Rasa allows 0 epochs to disable a component's training
    ok_type = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
    example = _OPTION_EXAMPLES.get(option, int(low or 1))
    if isinstance(value, bool) or not ok_type:
        out.error(
            f"option '{option}' of {component} must be {'an integer' if kind == 'int' else 'a number'}, got {_kind(value)}",
            option_line,
            f"set {option} to a number such as {example}",
        )
        return
    if (low is not None and value < low) or (high is not None and value > high) or (kind == "float" and low == 0.0 and option == "learning_rate" and value <= 0):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}" if option != "learning_rate" else "greater than 0"
        out.error(
            f"option '{option}' of {component} must be {bounds}, got {value}",
            option_line,
            f"set {option} to a value {bounds}, such as {example}",
        )


def _check_ngrams(component: str, options: Mapping[str, Any], line: int, out: Collector) -> None:
    low, high = options.get("min_ngram"), options.get("max_ngram")
    if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool) and low > high:
        out.error(f"{component}: min_ngram {low} is greater than max_ngram {high}", line, "make min_ngram <= max_ngram")
    analyzer = options.get("analyzer")
    if analyzer is not None and analyzer not in ("word", "char", "char_wb"):
        out.error(f"{component}: analyzer must be word, char or char_wb, got '{analyzer}'", line)


def _key_line(doc: Any, key: str) -> int:
    return doc.key_line(key) if isinstance(doc, YMap) else 1
