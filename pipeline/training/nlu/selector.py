"""ResponseSelector: retrieval intents (``faq/ask_price``) answered by a second DIET-style model.

Pure NumPy/JSON (no TensorFlow): options, the trained selector, its parse output.
Training lives in :mod:`.trainer`.

As in Rasa, the intent classifier sees the base intent (``faq``) of a retrieval
example, and each ``ResponseSelector`` in the pipeline trains one more network
whose labels are the full retrieval intents (``faq/ask_price``, Rasa's
``intent_response_key``): on the examples of its ``retrieval_intent``, or of
every retrieval intent when that option is unset (the ``default`` selector).
The selector shares the NLU model's featurizers (vocabularies, pretrained
features) and has its own weights, laid out by the same
:class:`~.architecture.NetworkConfig` with entity recognition off.

Parse output, Rasa 3.x's shape::

    "response_selector": {
        "all_retrieval_intents": ["chitchat", "faq"],
        "default": {                      # or the selector's retrieval_intent
            "response": {"responses": [{"text": ...}], "confidence": 0.97,
                         "intent_response_key": "faq/ask_price",
                         "utter_action": "utter_faq/ask_price"},
            "ranking": [{"confidence": 0.97, "intent_response_key": "faq/ask_price"}, ...],
        },
    }
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.data.config import default_pipeline
from pipeline.data.model import Component, Config, NluExample, retrieval_action, thaw
from pipeline.training.options import Check, Resolution, check_bool, check_str, read_options

from . import inference
from .architecture import NetworkConfig
from .settings import _DIET_CHECKS, _DIET_IGNORED, DietOptions

__all__ = [
    "DEFAULT_SELECTOR_KEY",
    "RESPONSE_PREFIX",
    "SelectorSettings",
    "TrainedSelector",
    "resolve_selector_options",
    "resolve_selectors",
    "selector_examples",
    "retrieval_responses",
    "render_response_selector",
]

#: Key of a selector without ``retrieval_intent`` in the parse output, as in Rasa.
DEFAULT_SELECTOR_KEY = "default"
#: ``utter_faq/ask_price`` is the response of the retrieval intent ``faq/ask_price``.
RESPONSE_PREFIX = "utter_"
#: Rasa's ResponseSelector architecture defaults that differ from deltatrain's DIETClassifier
#: defaults (no transformer layer, 20-dimensional embeddings); the training defaults
#: (learning rate, batch sizes, automatic epochs) are DIETClassifier's (bench/RESULTS.md).
SELECTOR_DEFAULTS = DietOptions(number_of_transformer_layers=0, embedding_dimension=20, entity_recognition=False)

#: Options Rasa fixes for a ResponseSelector whatever the config says.
_SELECTOR_FIXED = ("entity_recognition", "intent_classification", "BILOU_flag")
_SELECTOR_CHECKS: Mapping[str, Check] = {
    **{k: v for k, v in _DIET_CHECKS.items() if k not in _SELECTOR_FIXED},
    "retrieval_intent": check_str,
    "use_text_as_label": check_bool,
}


@dataclass(frozen=True)
class SelectorSettings:
    """One ResponseSelector of the pipeline: which retrieval intent, and its network options."""

    retrieval_intent: str | None = None
    use_text_as_label: bool = False
    diet: DietOptions = field(default_factory=lambda: SELECTOR_DEFAULTS)

    @property
    def key(self) -> str:
        """Its key in the parse output: the retrieval intent, or ``default``."""
        return self.retrieval_intent or DEFAULT_SELECTOR_KEY

    def get_config(self) -> dict[str, Any]:
        diet = thaw(asdict(self.diet))
        return {"retrieval_intent": self.retrieval_intent, "use_text_as_label": self.use_text_as_label, "diet": diet}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SelectorSettings":
        diet = dict(config["diet"])
        diet["batch_size"] = tuple(diet["batch_size"])
        return cls(config.get("retrieval_intent"), bool(config.get("use_text_as_label", False)), DietOptions(**diet))

    def compatibility_key(self) -> dict[str, Any]:
        """What must not change for a finetune (everything but epochs)."""
        config = self.get_config()
        config["diet"].pop("epochs")
        return config


def resolve_selector_options(component: Component, resolution: Resolution | None = None) -> SelectorSettings:
    """A ``- name: ResponseSelector`` entry as :class:`SelectorSettings`.

    Without ``resolution`` the first bad option raises a ConfigError; options Rasa accepts but
    that mean nothing here are noted on ``resolution`` (one validation warning per component).
    """
    res = resolution or Resolution()
    ignored: dict[str, Check | None] = {**_DIET_IGNORED, **{key: check_bool for key in _SELECTOR_FIXED}}
    opts = read_options(component, _SELECTOR_CHECKS, ignored, res)
    if "use_sparse_input_dropout" in opts:
        opts["sparse_input_dropout"] = opts.pop("use_sparse_input_dropout")
    retrieval_intent = opts.pop("retrieval_intent", None) or None
    use_text_as_label = bool(opts.pop("use_text_as_label", False))
    if use_text_as_label:
        res.ignore(
            component,
            "use_text_as_label=true (deltatrain trains on the retrieval intents"
            " `faq/ask_price`, Rasa's default, not on the response texts)",
        )
    return SelectorSettings(retrieval_intent, use_text_as_label, replace(SELECTOR_DEFAULTS, **opts))


def resolve_selectors(config: Config) -> tuple[SelectorSettings, ...]:
    """Every ResponseSelector of the pipeline (the default pipeline when there is none), one per key.

    Two selectors with the same key write to the same place of the parse result
    in Rasa (the later wins); here the later one replaces the earlier.
    """
    pipeline = config.pipeline or default_pipeline(config.language)
    by_key: dict[str, SelectorSettings] = {}
    for component in pipeline:
        if component.name == "ResponseSelector":
            settings = resolve_selector_options(component)
            by_key.pop(settings.key, None)
            by_key[settings.key] = settings
    return tuple(by_key.values())


def selector_examples(examples: Sequence[NluExample], settings: SelectorSettings) -> list[int]:
    """Indices of the examples a selector trains on: retrieval examples of its retrieval intent."""
    return [
        i
        for i, e in enumerate(examples)
        if e.response_key and (settings.retrieval_intent is None or e.intent == settings.retrieval_intent)
    ]


def retrieval_responses(responses: Mapping[str, Any]) -> dict[str, Any]:
    """The retrieval responses (``utter_faq/ask_price``) of a domain's responses, as plain JSON."""
    return {name: thaw(value) for name, value in sorted(responses.items()) if retrieval_action(name) != name}


@dataclass
class TrainedSelector:
    """One trained ResponseSelector: its settings, labels (full retrieval intents) and weights."""

    settings: SelectorSettings
    keys: tuple[str, ...]  # intent_response_keys in label id order
    network: NetworkConfig
    weights: dict[str, np.ndarray]
    summary: dict[str, Any] = field(default_factory=dict)

    def probabilities(
        self, ids: Sequence[np.ndarray], positions: Sequence[np.ndarray], num_tokens: int, dense: np.ndarray | None
    ) -> np.ndarray:
        """Softmax confidence of every retrieval intent for one encoded message."""
        raw = inference.predict(self.weights, self.network, ids, positions, num_tokens, dense)
        assert raw.intent_probs is not None  # a selector always classifies
        return raw.intent_probs

    def get_config(self) -> dict[str, Any]:
        return {
            "settings": self.settings.get_config(),
            "keys": list(self.keys),
            "network": self.network.get_config(),
            "summary": self.summary,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> "TrainedSelector":
        return cls(
            SelectorSettings.from_config(config["settings"]),
            tuple(config["keys"]),
            NetworkConfig.from_config(config["network"]),
            {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()},
            dict(config.get("summary", {})),
        )

    def render(self, probs: np.ndarray, responses: Mapping[str, Any]) -> dict[str, Any]:
        """Rasa's ``{"response": {...}, "ranking": [...]}`` for one message."""
        order = np.argsort(-probs, kind="stable")
        length = self.settings.diet.ranking_length or len(order)
        ranking = [{"confidence": float(probs[i]), "intent_response_key": self.keys[i]} for i in order[:length]]
        best = self.keys[int(order[0])]
        utter_action = RESPONSE_PREFIX + best
        return {
            "response": {
                # Rasa's fallback when the response is missing: the key as the text
                "responses": thaw(responses.get(utter_action)) or [{"text": best}],
                "confidence": float(probs[order[0]]),
                "intent_response_key": best,
                "utter_action": utter_action,
            },
            "ranking": ranking,
        }


def render_response_selector(
    selectors: Sequence[TrainedSelector],
    probabilities: Sequence[np.ndarray],
    responses: Mapping[str, Any],
    all_retrieval_intents: Sequence[str],
) -> dict[str, Any]:
    """The parse result's ``response_selector`` block from each selector's confidences."""
    block: dict[str, Any] = {"all_retrieval_intents": list(all_retrieval_intents)}
    for selector, probs in zip(selectors, probabilities):
        block[selector.settings.key] = selector.render(probs, responses)
    return block
