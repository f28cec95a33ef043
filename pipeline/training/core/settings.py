"""Policy settings resolved from ``config.policies`` (Rasa names and options).

Pure Python, no TensorFlow. :func:`resolve_settings` turns the config into a
frozen :class:`CoreSettings`; ``get_config()``/``from_config()`` round-trip it
through JSON for the saved model and the finetune compatibility check.

Accepted policies and options (Rasa's names; anything else is a
:class:`~pipeline.errors.ConfigError` listing the valid names):

* ``RulePolicy``: ``core_fallback_threshold`` (0.3), ``core_fallback_action_name``
  (``action_default_fallback``), ``enable_fallback_prediction`` (true),
  ``check_for_contradictions`` (true), ``priority`` (6)
* ``MemoizationPolicy``: ``max_history`` (5; ``null``: the whole conversation), ``priority`` (3)
* ``TEDPolicy``: ``max_history`` (none: the longest training conversation),
  ``epochs`` (1, as in Rasa), ``batch_size`` ([64, 256]), ``learning_rate`` (0.001),
  ``transformer_size`` (128), ``number_of_transformer_layers`` (1),
  ``number_of_attention_heads`` (4), ``embedding_dimension`` (20),
  ``drop_rate_dialogue`` (0.1), ``drop_rate_attention`` (0.0), ``ranking_length`` (10),
  ``random_seed`` (the ``seed`` given to training), ``priority`` (1).
  Sizes may be given per part as in Rasa (``{dialogue: 128, text: ...}``); the
  ``dialogue`` value is used.

An empty policy list (or the loader's default) is Rasa's default config:
MemoizationPolicy, RulePolicy, TEDPolicy(max_history 5, epochs 100). Rasa
options that make no sense here are accepted and listed in
``CoreSettings.ignored``; the trained model's summary reports them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence, Union

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

__all__ = [
    "POLICY_NAMES",
    "DEFAULT_POLICIES",
    "RuleSettings",
    "MemoSettings",
    "TedSettings",
    "PolicySettings",
    "CoreSettings",
    "resolve_settings",
]

POLICY_NAMES = ("RulePolicy", "MemoizationPolicy", "TEDPolicy")

#: Rasa 3's default policies (``rasa init``'s config and the default when none are given).
DEFAULT_POLICIES: tuple[Component, ...] = (
    Component("MemoizationPolicy", {}),
    Component("RulePolicy", {}),
    Component("TEDPolicy", {"max_history": 5, "epochs": 100}),
)


@dataclass(frozen=True)
class RuleSettings:
    """RulePolicy options."""

    name: str = "RulePolicy"
    priority: int = 6
    core_fallback_threshold: float = 0.3
    core_fallback_action_name: str = "action_default_fallback"
    enable_fallback_prediction: bool = True
    check_for_contradictions: bool = True


@dataclass(frozen=True)
class MemoSettings:
    """MemoizationPolicy options."""

    name: str = "MemoizationPolicy"
    priority: int = 3
    max_history: int | None = 5  # None: the whole conversation


@dataclass(frozen=True)
class TedSettings:
    """TEDPolicy options (Rasa's names and defaults)."""

    name: str = "TEDPolicy"
    priority: int = 1
    max_history: int | None = None
    epochs: int = 1
    batch_size: tuple[int, int] = (64, 256)
    learning_rate: float = 0.001
    transformer_size: int = 128
    number_of_transformer_layers: int = 1
    number_of_attention_heads: int = 4
    embedding_dimension: int = 20
    drop_rate_dialogue: float = 0.1
    drop_rate_attention: float = 0.0
    ranking_length: int = 10
    random_seed: int | None = None


PolicySettings = Union[RuleSettings, MemoSettings, TedSettings]
_CLASSES: Mapping[str, type] = {"RulePolicy": RuleSettings, "MemoizationPolicy": MemoSettings, "TEDPolicy": TedSettings}


@dataclass(frozen=True)
class CoreSettings:
    """Every policy, in config order, with its resolved options."""

    policies: tuple[PolicySettings, ...]
    ignored: tuple[str, ...] = field(default=(), compare=False)

    def policy(self, name: str) -> PolicySettings | None:
        return next((p for p in self.policies if p.name == name), None)

    @property
    def ted(self) -> TedSettings | None:
        policy = self.policy("TEDPolicy")
        return policy if isinstance(policy, TedSettings) else None

    def get_config(self) -> dict[str, Any]:
        """JSON-able form; :meth:`from_config` inverts it."""
        return {"policies": [thaw(asdict(p)) for p in self.policies], "ignored": list(self.ignored)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "CoreSettings":
        policies = []
        for data in config["policies"]:
            values = dict(data)
            if "batch_size" in values:
                values["batch_size"] = tuple(values["batch_size"])
            policies.append(_CLASSES[values["name"]](**values))
        return cls(tuple(policies), tuple(config.get("ignored", ())))

    def compatibility_key(self) -> dict[str, Any]:
        """What must not change for a finetune: the policy list and TED's network.

        TED's ``epochs``, ``priority`` and ``ranking_length`` may change; rules and
        memoization are rebuilt from the new data anyway.
        """
        key: dict[str, Any] = {"policies": [p.name for p in self.policies]}
        if self.ted is not None:
            ted = thaw(asdict(self.ted))
            for name in ("epochs", "priority", "ranking_length"):
                ted.pop(name)
            key["TEDPolicy"] = ted
        return key


# ------------------------------------------------------------------- option checks

def _dialogue(check: Check) -> Check:
    """Rasa allows ``{"text": n, "dialogue": m, ...}`` for TED sizes; we use ``dialogue``."""

    def wrapped(policy: str, option: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            if "dialogue" not in value:
                raise fail(policy, option, "a number or a mapping with a 'dialogue' key", value)
            value = value["dialogue"]
        return check(policy, option, value)

    return wrapped


def _optional(check: Check) -> Check:
    def wrapped(policy: str, option: str, value: Any) -> Any:
        return None if value is None else check(policy, option, value)

    return wrapped


_CHECKS: Mapping[str, Mapping[str, Check]] = {
    "RulePolicy": {
        "priority": int_option(0),
        "core_fallback_threshold": float_option(0.0, 1.0),
        "core_fallback_action_name": check_str,
        "enable_fallback_prediction": check_bool,
        "check_for_contradictions": check_bool,
    },
    "MemoizationPolicy": {"priority": int_option(0), "max_history": _optional(int_option(1))},
    "TEDPolicy": {
        "priority": int_option(0),
        "max_history": _optional(int_option(1, 1000)),
        "epochs": int_option(0),
        "batch_size": check_batch_size,
        "learning_rate": float_option(0.0, 1.0, open_low=True),
        "transformer_size": _dialogue(int_option(4, 4096)),
        "number_of_transformer_layers": _dialogue(int_option(0, 24)),
        "number_of_attention_heads": int_option(1, 64),
        "embedding_dimension": int_option(2, 1024),
        "drop_rate_dialogue": float_option(0.0, 0.95),
        "drop_rate_attention": float_option(0.0, 0.95),
        "ranking_length": int_option(0),
        "random_seed": _optional(int_option(0)),
    },
}
_IGNORED: Mapping[str, Sequence[str]] = {
    "RulePolicy": ("restrict_rules", "use_nlu_confidence_as_score"),
    "MemoizationPolicy": ("use_nlu_confidence_as_score", "enable_feature_string_compression"),
    "TEDPolicy": (
        "hidden_layers_sizes", "dense_dimension", "concat_dimension", "encoding_dimension",
        "number_of_negative_examples", "similarity_type", "loss_type", "maximum_positive_similarity",
        "maximum_negative_similarity", "use_maximum_negative_similarity", "scale_loss",
        "regularization_constant", "negative_margin_scale", "drop_rate", "drop_rate_label",
        "connection_density", "use_sparse_input_dropout", "use_dense_input_dropout",
        "use_masked_language_model", "evaluate_every_number_of_epochs", "evaluate_on_number_of_examples",
        "tensorboard_log_directory", "tensorboard_log_level", "checkpoint_model", "e2e_confidence_threshold",
        "featurizers", "entity_recognition", "constrain_similarities", "model_confidence", "BILOU_flag",
        "split_entities_by_comma", "max_relative_position", "unidirectional_encoder",
        "use_key_relative_attention", "use_value_relative_attention", "renormalize_confidences",
        "batch_strategy", "run_eagerly", "intent_classification", "max_sequence_length",
    ),
}  # fmt: skip
_ALWAYS_IGNORED = ("alias", "use_gpu")


def _resolve(component: Component, ignored: list[str]) -> PolicySettings:
    checks = _CHECKS[component.name]
    values: dict[str, Any] = {}
    for key, value in component.options.items():
        if key in checks:
            if value is not None or key in ("max_history", "random_seed"):
                values[key] = checks[key](component.name, key, value)
        elif key in _IGNORED[component.name] or key in _ALWAYS_IGNORED:
            ignored.append(f"{component.name}.{key}")
        else:
            raise ConfigError(
                f"{component.name}: unknown option '{key}'; valid options are {', '.join(sorted(checks))}; "
                f"received {key}={thaw(value)!r}",
                location=component.location,
                hint=f"remove '{key}' or fix its spelling under '- name: {component.name}'",
            )
    return _CLASSES[component.name](**values)  # type: ignore[no-any-return]


def resolve_settings(config: Config) -> CoreSettings:
    """Resolve ``config.policies``; an empty (or loader-default) list means Rasa's default."""
    components = DEFAULT_POLICIES if (not config.policies or config.policies_is_default) else config.policies
    ignored: list[str] = []
    policies: list[PolicySettings] = []
    for component in components:
        if component.name not in _CHECKS:
            raise ConfigError(
                f"unknown policy '{component.name}'; supported policies are {', '.join(POLICY_NAMES)}",
                location=component.location,
                hint="map Rasa's other policies to these three in config.yml (see pipeline.data.config)",
            )
        if any(p.name == component.name for p in policies):
            raise ConfigError(
                f"policy '{component.name}' is listed twice in config.yml; each policy may appear once",
                location=component.location,
                hint=f"merge the options of both '- name: {component.name}' entries into one",
            )
        policies.append(_resolve(component, ignored))
    return CoreSettings(tuple(policies), tuple(ignored))
