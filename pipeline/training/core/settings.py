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
MemoizationPolicy, RulePolicy, TEDPolicy(max_history 5, epochs 100). Every
option Rasa 2.x/3.x accepts for these policies is accepted (Rasa 1/2 names read
as today's; a Rasa 2 ``featurizer:`` list gives its ``max_history``); those
that make no sense here are listed in ``CoreSettings.ignored``, shown as one
warning per policy by ``deltatrain data validate`` (which runs this same
resolver through :func:`pipeline.data.config.read_config`) and in the trained
model's summary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Union

from pipeline.data.config import POLICIES as POLICY_NAMES
from pipeline.data.config import default_policies
from pipeline.data.model import Component, Config, thaw
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

#: Rasa 3's default policies (``rasa init``'s config and the default when none are given).
DEFAULT_POLICIES: tuple[Component, ...] = default_policies()


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


def _featurizer(policy: str, option: str, value: Any) -> int | None:
    """Rasa 1.x/2.x ``featurizer: [{name: MaxHistoryTrackerFeaturizer, max_history: 5, ...}]``: its max_history."""
    items = thaw(value)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise fail(policy, option, "a list of tracker featurizers (- name: MaxHistoryTrackerFeaturizer)", items)
    histories = [item["max_history"] for item in items if item.get("max_history") is not None]
    return int_option(1, 1000)(policy, "featurizer.max_history", histories[0]) if histories else None


#: Options of every policy (Rasa's ``Policy``): used here.
_POLICY_CHECKS: Mapping[str, Check] = {"priority": int_option(0)}
#: ... and accepted without meaning here.
_POLICY_IGNORED: Mapping[str, Check | None] = {"should_finetune": None, "state_featurizer": None}
_MEMO_IGNORED: Mapping[str, Check | None] = {
    "use_nlu_confidence_as_score": check_bool, "enable_feature_string_compression": check_bool, "lookup": None,
}  # fmt: skip
_CHECKS: Mapping[str, Mapping[str, Check]] = {
    "RulePolicy": {
        **_POLICY_CHECKS,
        "core_fallback_threshold": float_option(0.0, 1.0),
        "core_fallback_action_name": check_str,
        "enable_fallback_prediction": check_bool,
        "check_for_contradictions": check_bool,
    },
    "MemoizationPolicy": {**_POLICY_CHECKS, "max_history": _optional(int_option(1))},
    "TEDPolicy": {
        **_POLICY_CHECKS,
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
_IGNORED: Mapping[str, Mapping[str, Check | None]] = {
    "RulePolicy": {
        **_POLICY_IGNORED, **_MEMO_IGNORED, "restrict_rules": check_bool, "max_history": None,
    },
    "MemoizationPolicy": {**_POLICY_IGNORED, **_MEMO_IGNORED},
    "TEDPolicy": {
        **_POLICY_IGNORED,
        "similarity_type": choice("auto", "inner", "cosine"),
        "loss_type": choice("cross_entropy", "softmax", "margin"),
        "model_confidence": choice("softmax", "linear_norm", "cosine", "inner"),  # Rasa 2.3+ had all four
        "batch_strategy": choice("sequence", "balanced"),
        "tensorboard_log_level": choice("epoch", "batch"),
        "hidden_layers_sizes": None, "dense_dimension": None, "concat_dimension": None,
        "encoding_dimension": None, "number_of_negative_examples": None, "maximum_positive_similarity": None,
        "maximum_negative_similarity": None, "use_maximum_negative_similarity": None, "scale_loss": None,
        "regularization_constant": None, "negative_margin_scale": None, "drop_rate": None,
        "drop_rate_label": None, "connection_density": None, "use_sparse_input_dropout": None,
        "use_dense_input_dropout": None, "use_masked_language_model": None,
        "evaluate_every_number_of_epochs": None, "evaluate_on_number_of_examples": None,
        "tensorboard_log_directory": None, "checkpoint_model": None, "e2e_confidence_threshold": None,
        "featurizers": None, "entity_recognition": None, "constrain_similarities": None, "BILOU_flag": None,
        "split_entities_by_comma": None, "max_relative_position": None, "unidirectional_encoder": None,
        "use_key_relative_attention": None, "use_value_relative_attention": None,
        "renormalize_confidences": None, "intent_classification": None, "max_sequence_length": None,
        # a Rasa Core 0.x training argument that Rasa's own concertbot example still carries
        "max_training_samples": None,
    },
}  # fmt: skip


def _resolve(component: Component, resolution: Resolution) -> PolicySettings:
    checks = {**_CHECKS[component.name]}
    if component.name != "RulePolicy":
        checks["featurizer"] = _featurizer
    values = read_options(component, checks, _IGNORED[component.name], resolution)
    from_featurizer = values.pop("featurizer", None)
    if from_featurizer is not None and "max_history" not in values:
        values["max_history"] = from_featurizer
    return _CLASSES[component.name](**values)  # type: ignore[no-any-return]


def resolve_settings(config: Config, resolution: Resolution | None = None) -> CoreSettings:
    """Resolve ``config.policies``; an empty (or loader-default) list means Rasa's default.

    Without ``resolution`` the first problem raises a ConfigError; with a non-strict one every
    problem is recorded there.
    """
    res = resolution or Resolution()
    components = DEFAULT_POLICIES if (not config.policies or config.policies_is_default) else config.policies
    policies: list[PolicySettings] = []
    for component in components:
        if component.name not in _CHECKS:
            res.error(
                ConfigError(
                    f"unknown policy '{component.name}'; supported policies are {', '.join(POLICY_NAMES)}",
                    hint="map Rasa's other policies to these three in config.yml (see pipeline.data.config)",
                ),
                component,
            )
            continue
        if any(p.name == component.name for p in policies):
            res.error(
                ConfigError(
                    f"policy '{component.name}' is listed twice in config.yml; each policy may appear once",
                    hint=f"merge the options of both '- name: {component.name}' entries into one",
                ),
                component,
            )
            continue
        policies.append(_resolve(component, res))
    return CoreSettings(tuple(policies), res.ignored_notes())
