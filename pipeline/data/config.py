"""config.yml: Rasa component and policy names mapped to deltatrain's own, checked at load time.

deltatrain implements a fixed set of components (:data:`NLU_COMPONENTS`,
:data:`POLICIES`). Rasa names it does not implement are looked up in
:data:`NLU_STAND_INS` / :data:`POLICY_STAND_INS` (:class:`Fit`): an equivalent
is used in their place with a warning; spaCy's and MITIE's components are
approximated (left out or replaced) with a warning that says what is lost, so
Rasa's own assistants validate and train; what deltatrain cannot stand in for at
all (Jieba's Chinese word segmentation) and custom component classes
(``my_package.MyComponent``) are errors naming the line, unless
``--ignore-unknown-components`` leaves them out (then a warning). Any other name
is an error listing the supported names (usually a typo).

Options are checked by the same resolvers the trainers use
(:func:`pipeline.training.nlu.settings.resolve_settings`,
:func:`pipeline.training.core.settings.resolve_settings`, no TensorFlow), so
every config error is reported here with config.yml:line before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from pipeline.data.model import Component, Config, freeze
from pipeline.data.readers import Collector, _kind
from pipeline.data.yamlio import YMap, YSeq
from pipeline.errors import Problem

if TYPE_CHECKING:
    from pipeline.training.options import Resolution

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
    "DucklingEntityExtractor",
)
POLICIES = ("RulePolicy", "MemoizationPolicy", "TEDPolicy")


class Fit(Enum):
    """How well deltatrain stands in for a Rasa component it does not implement."""

    EQUIVALENT = "equivalent"  # the replacement does the same job: a warning
    APPROXIMATE = "approximate"  # something is lost, and the warning says what: still trains
    NONE = "none"  # nothing here can do its job: an error unless --ignore-unknown-components


@dataclass(frozen=True)
class StandIn:
    """What deltatrain does with a Rasa component it does not implement."""

    #: our component used in its place (None: left out)
    replacement: str | None
    fit: Fit = Fit.EQUIVALENT
    #: what is lost (APPROXIMATE, NONE), said in the warning or error
    lost: str = ""
    #: the replacement takes the component's options (same options under the same names)
    keep_options: bool = False
    #: else these options are carried over under the replacement's name for them
    renamed_options: Mapping[str, str] = field(default_factory=dict)


_WORD_VECTORS = (
    "its pretrained word vectors are not used (for English, LanguageModelFeaturizer adds pretrained features)"
)
_PRETRAINED_ENTITIES = (
    "its pretrained entities are not extracted: annotate them in the NLU data so DIETClassifier learns them,"
    " or use DucklingEntityExtractor for dates, numbers and amounts"
)
_WHITESPACE = "texts are split on whitespace and punctuation by WhitespaceTokenizer instead"
NLU_STAND_INS: Mapping[str, StandIn] = {
    "SpacyNLP": StandIn(None, Fit.APPROXIMATE, "it only loads spaCy's model for the components below"),
    "SpacyTokenizer": StandIn("WhitespaceTokenizer", Fit.APPROXIMATE, _WHITESPACE),
    "SpacyFeaturizer": StandIn(None, Fit.APPROXIMATE, _WORD_VECTORS),
    "SpacyEntityExtractor": StandIn(None, Fit.APPROXIMATE, _PRETRAINED_ENTITIES),
    "MitieNLP": StandIn(None, Fit.APPROXIMATE, "it only loads MITIE's model for the components below"),
    "MitieTokenizer": StandIn("WhitespaceTokenizer", Fit.APPROXIMATE, _WHITESPACE),
    "MitieFeaturizer": StandIn(None, Fit.APPROXIMATE, _WORD_VECTORS),
    "MitieIntentClassifier": StandIn("DIETClassifier", Fit.APPROXIMATE, "intents are classified by DIETClassifier"),
    "MitieEntityExtractor": StandIn("DIETClassifier", Fit.APPROXIMATE, "entities are extracted by DIETClassifier"),
    "JiebaTokenizer": StandIn(
        "WhitespaceTokenizer", Fit.NONE,
        "Chinese is written without spaces, so whitespace tokens would be whole sentences",
    ),
    # Rasa 2's HFTransformersNLP / LanguageModelTokenizer / ConveRTTokenizer: loaders and whitespace
    # tokenizers for a language model featurizer, which LanguageModelFeaturizer covers on its own.
    "HFTransformersNLP": StandIn(None),
    "LanguageModelTokenizer": StandIn("WhitespaceTokenizer"),
    "ConveRTTokenizer": StandIn("WhitespaceTokenizer"),
    "ConveRTFeaturizer": StandIn("LanguageModelFeaturizer"),
    "CRFEntityExtractor": StandIn("DIETClassifier"),
    "SklearnIntentClassifier": StandIn("DIETClassifier"),
    "EmbeddingIntentClassifier": StandIn("DIETClassifier"),
    "KeywordIntentClassifier": StandIn("DIETClassifier"),
    "LogisticRegressionClassifier": StandIn("DIETClassifier"),
    "RegexEntityExtractor": StandIn(None),
    "DucklingHTTPExtractor": StandIn("DucklingEntityExtractor", keep_options=True),  # Rasa 1 name
}
POLICY_STAND_INS: Mapping[str, StandIn] = {
    "AugmentedMemoizationPolicy": StandIn("MemoizationPolicy", keep_options=True),
    "UnexpecTEDIntentPolicy": StandIn(None),  # only ever predicts action_unlikely_intent
    "KerasPolicy": StandIn("TEDPolicy"),
    "EmbeddingPolicy": StandIn("TEDPolicy"),  # TEDPolicy's name in Rasa 1
    "SklearnPolicy": StandIn("TEDPolicy"),
    # Rasa 2 replaced these four by RulePolicy (its migration guide)
    "FormPolicy": StandIn("RulePolicy"),
    "MappingPolicy": StandIn("RulePolicy"),
    "FallbackPolicy": StandIn(
        "RulePolicy",
        renamed_options={"core_threshold": "core_fallback_threshold", "fallback_action_name": "core_fallback_action_name"},
    ),
    "TwoStageFallbackPolicy": StandIn(
        "RulePolicy",
        renamed_options={
            "core_threshold": "core_fallback_threshold",
            "fallback_core_action_name": "core_fallback_action_name",
        },
    ),
}
#: ``Problem.code`` of every config.yml finding.
PROBLEM_CODE = "config"
#: Hint on components deltatrain cannot run.
IGNORE_HINT = (
    "remove it from config.yml, or pass --ignore-unknown-components"
    " (Action input 'ignore-unknown-components: true') to train without it"
)

#: Rasa 3.x's default pipeline (used when config leaves it empty) ...
DEFAULT_PIPELINE: tuple[tuple[str, dict[str, Any]], ...] = (
    ("WhitespaceTokenizer", {}),
    ("RegexFeaturizer", {}),
    ("LexicalSyntacticFeaturizer", {}),
    ("CountVectorsFeaturizer", {}),
    ("CountVectorsFeaturizer", {"analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4}),
    ("DIETClassifier", {}),
    ("EntitySynonymMapper", {}),
    ("ResponseSelector", {}),  # trains only when the data has retrieval intents (faq/ask_price)
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


def default_policies() -> tuple[Component, ...]:
    """Rasa 3's default policies, used when config.yml lists none."""
    return _components(DEFAULT_POLICIES)


def read_config(doc: Any, out: Collector, *, ignore_unknown_components: bool = False) -> Config:
    """Read config.yml (already parsed) and check every option; problems go to ``out``.

    ``ignore_unknown_components``: custom components and components deltatrain cannot
    run are left out with a warning instead of being errors.
    """
    if doc is None:
        doc = YMap()
    if not isinstance(doc, dict):
        _error(out, f"config must be a mapping with 'pipeline' and 'policies', got {_kind(doc)}", 1)
        doc = YMap()
    language = doc.get("language") or "en"
    entries: dict[int, Any] = {}
    reader = _ComponentReader(out, entries, ignore_unknown_components)
    pipeline, pipeline_default = reader.read(
        doc, "pipeline", NLU_COMPONENTS, NLU_STAND_INS, default_pipeline(str(language))
    )
    if not _is_english(str(language)):
        for component in pipeline:
            if component.name == "LanguageModelFeaturizer":
                _warning(
                    out,
                    f"LanguageModelFeaturizer uses an English model (all-MiniLM-L6-v2); the language is '{language}'",
                    component.location.line if component.location else None,
                    "remove LanguageModelFeaturizer for a non-English assistant, or set 'language: en'",
                )
    policies, policies_default = reader.read(doc, "policies", POLICIES, POLICY_STAND_INS, default_policies())
    config = Config(
        language=str(language),
        pipeline=pipeline,
        policies=policies,
        recipe=str(doc.get("recipe") or "default.v1"),
        assistant_id=None if doc.get("assistant_id") is None else str(doc.get("assistant_id")),
        pipeline_is_default=pipeline_default,
        policies_is_default=policies_default,
    )
    _check_options(config, doc, entries, out)
    out.problems.sort(key=lambda p: (p.location.line or 0) if p.location else 0)  # in file order
    return config


@dataclass
class _ComponentReader:
    out: Collector
    entries: dict[int, Any]  # line of '- name:' -> its YAML mapping (for option lines)
    ignore_unknown: bool

    def read(
        self,
        doc: Any,
        key: str,
        supported: tuple[str, ...],
        stand_ins: Mapping[str, StandIn],
        defaults: tuple[Component, ...],
    ) -> tuple[tuple[Component, ...], bool]:
        out = self.out
        raw = doc.get(key)
        if not raw:
            return defaults, True
        if not isinstance(raw, list):
            _error(out, f"'{key}' must be a list of components, got {_kind(raw)}", _key_line(doc, key))
            return (), False
        kind = "policy" if key == "policies" else "component"
        result: list[Component] = []
        placeholders: list[Component] = []  # replacements for unimplemented components, in ``result`` too
        for index, entry in enumerate(raw):
            line = raw.item_line(index) if isinstance(raw, YSeq) else _key_line(doc, key)
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                _error(out, f"each entry of '{key}' needs a 'name', got {_kind(entry)}", line, "write '- name: ComponentName'")
                continue
            written = entry["name"]
            name = _builtin_name(written, (*supported, *stand_ins))
            options = {k: v for k, v in entry.items() if k != "name"}
            if name is None:  # a module path outside Rasa: a custom component class
                self._cannot_run(
                    f"'{written}' is a custom {kind} class; deltatrain trains its own models and cannot run"
                    " Python components",
                    line,
                    "",
                )
                continue
            if name in stand_ins:
                stand_in = stand_ins[name]
                replacement = stand_in.replacement
                if stand_in.fit is Fit.NONE:
                    instead = f"; {replacement} is used in its place" if replacement else ""
                    if not self._cannot_run(f"deltatrain cannot run {name} ({stand_in.lost})", line, instead):
                        continue
                elif stand_in.fit is Fit.APPROXIMATE:
                    instead = f"{replacement} is used in its place" if replacement else "left out"
                    _warning(out, f"{name} is not implemented by deltatrain: {instead}; {stand_in.lost}", line,
                             _WARNING_HINT)
                elif replacement is None:
                    _warning(out, f"{name} is not implemented by deltatrain and is left out", line, _WARNING_HINT)
                    continue
                else:
                    message = f"{name} is not implemented by deltatrain; {replacement} is used instead"
                    carried = [f"{k} as {v}" for k, v in stand_in.renamed_options.items() if k in options]
                    dropped = [k for k in options if k not in stand_in.renamed_options]
                    if carried:
                        message += f" with {', '.join(carried)}"
                    if dropped and not stand_in.keep_options:
                        message += f" (its options {', '.join(dropped)} are not carried over)"
                    _warning(out, message, line, _WARNING_HINT)
                if replacement is None:
                    continue
                if stand_in.keep_options:
                    self.entries[line] = entry
                    result.append(Component(replacement, freeze(options), out.at(line)))
                    continue
                renamed = {new: options[old] for old, new in stand_in.renamed_options.items() if old in options}
                existing = next((i for i, c in enumerate(result) if c.name == replacement), None)
                if existing is not None:  # named already: add what it does not set itself
                    before = result[existing]
                    result[existing] = replace(before, options=freeze({**renamed, **before.options}))
                    placeholders[:] = [result[existing] if c is before else c for c in placeholders]
                    continue
                placeholder = Component(replacement, freeze(renamed), out.at(line))
                placeholders.append(placeholder)
                result.append(placeholder)
                continue
            if name not in supported:
                _error(
                    out,
                    f"unknown {kind} '{written}' in '{key}'",
                    line,
                    f"supported names are {', '.join(supported)}; for a custom {kind} write its module path"
                    f" (my_package.My{kind.title()}); received '{written}'",
                )
                continue
            self.entries[line] = entry
            component = Component(name, freeze(options), out.at(line))
            # Named explicitly after a stand-in for it: take the stand-in's place instead of doubling it.
            stood_in_by = next((c for c in placeholders if c.name == name), None)
            if stood_in_by is not None:
                placeholders.remove(stood_in_by)
                component = replace(component, options=freeze({**stood_in_by.options, **options}))
                result[next(i for i, c in enumerate(result) if c is stood_in_by)] = component
            else:
                result.append(component)
        return tuple(result), False

    def _cannot_run(self, message: str, line: int, instead: str) -> bool:
        """Report a component deltatrain cannot run: an error, or with the flag a warning (True)."""
        if self.ignore_unknown:
            _warning(self.out, f"{message}: left out (--ignore-unknown-components){instead}", line)
            return True
        _error(self.out, message, line, IGNORE_HINT)
        return False


_WARNING_HINT = "use a component deltatrain implements in its place to silence this warning"


def _builtin_name(written: str, known: Sequence[str]) -> str | None:
    """The Rasa name of ``written``: ``rasa.nlu.….WhitespaceTokenizer`` -> ``WhitespaceTokenizer``;
    None for a module path outside Rasa (a custom class)."""
    if "." not in written:
        return written
    module, _, name = written.rpartition(".")
    if module.split(".")[0] == "rasa" and name in known:
        return name
    return None


def _check_options(config: Config, doc: Any, entries: Mapping[int, Any], out: Collector) -> None:
    """Run the trainers' own resolvers (TensorFlow-free) and report with config.yml:line."""
    # Imported here: the settings modules import this one (and live with the trainers).
    from pipeline.training.core.settings import resolve_settings as resolve_core  # noqa: PLC0415
    from pipeline.training.nlu.settings import resolve_settings as resolve_nlu  # noqa: PLC0415
    from pipeline.training.options import Resolution  # noqa: PLC0415

    resolvers: tuple[tuple[str, Callable[[Config, Resolution], object]], ...] = (
        ("pipeline", resolve_nlu),
        ("policies", resolve_core),
    )
    for key, resolve in resolvers:
        resolution = Resolution(strict=False)
        resolve(config, resolution)
        for finding in resolution.errors:
            line = _key_line(doc, key)
            location = finding.component.location if finding.component is not None else None
            if location is not None and location.line is not None:
                line = location.line
                entry = entries.get(line)
                if finding.option is not None and isinstance(entry, YMap) and finding.option in entry:
                    line = entry.key_line(finding.option)
            _error(out, finding.error.message, line, finding.error.hint)
        grouped: dict[int, tuple[Component, list[str]]] = {}
        for component, note in resolution.ignored:
            grouped.setdefault(id(component), (component, []))[1].append(note)
        for component, notes in grouped.values():
            warning_line = component.location.line if component.location else _key_line(doc, key)
            _warning(
                out,
                f"{component.name}: accepted but not used by deltatrain: {', '.join(notes)}",
                warning_line,
                "these options change nothing here; remove them to silence this warning",
            )


def _error(out: Collector, message: str, line: int | None, hint: str | None = None) -> None:
    out.problems.append(Problem("error", message, out.at(line), hint, code=PROBLEM_CODE))


def _warning(out: Collector, message: str, line: int | None, hint: str | None = None) -> None:
    out.problems.append(Problem("warning", message, out.at(line), hint, code=PROBLEM_CODE))


def _key_line(doc: Any, key: str) -> int:
    return doc.key_line(key) if isinstance(doc, YMap) else 1
