"""Option checks and the resolution report shared by the NLU and dialogue settings.

A check is ``check(component, option, value) -> parsed value`` and raises a
ConfigError that names the component and option, says what is valid and ends
with what was received.

:class:`Resolution` collects what resolving a config finds. Training resolves
strictly (the first error is raised); ``deltatrain data validate`` and every
command that loads a project resolve with ``strict=False`` through
:func:`pipeline.data.config.read_config`, which turns every error and every
ignored option into a problem with config.yml:line — the same resolver, so
validation catches every config error training would hit.

No TensorFlow here: this module is imported at load time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pipeline.data.model import Component, thaw
from pipeline.errors import ConfigError

Check = Callable[[str, str, Any], Any]

#: Option names of Rasa 1.x/2.x that Rasa renamed (``rasa.utils.train_utils.check_deprecated_options``,
#: removed in 3.0) -> today's name. Read as the new name wherever the component has that option.
RENAMED_OPTIONS: Mapping[str, str] = {
    "droprate": "drop_rate",
    "droprate_a": "drop_rate_dialogue",
    "droprate_b": "drop_rate_label",
    "hidden_layers_sizes_pre_dial": "hidden_layers_sizes",
    "hidden_layers_sizes_bot": "hidden_layers_sizes",
    "hidden_layers_sizes_a": "hidden_layers_sizes",
    "hidden_layers_sizes_b": "hidden_layers_sizes",
    "num_transformer_layers": "number_of_transformer_layers",
    "num_heads": "number_of_attention_heads",
    "dense_dim": "dense_dimension",
    "embed_dim": "embedding_dimension",
    "num_neg": "number_of_negative_examples",
    "mu_pos": "maximum_positive_similarity",
    "mu_neg": "maximum_negative_similarity",
    "use_max_sim_neg": "use_maximum_negative_similarity",
    "C2": "regularization_constant",
    "C_emb": "negative_margin_scale",
    "evaluate_every_num_epochs": "evaluate_every_number_of_epochs",
    "evaluate_on_num_examples": "evaluate_on_number_of_examples",
}

#: Options every component or policy may carry; they change nothing here.
ALWAYS_IGNORED = ("alias", "use_gpu", "run_eagerly")


@dataclass(frozen=True)
class ConfigFinding:
    """One error found while resolving: the component (None: the whole section) and option concerned."""

    error: ConfigError
    component: Component | None = None
    option: str | None = None


@dataclass
class Resolution:
    """What resolving found: errors, and per component the options accepted but not used.

    ``strict``: raise the first error (training); otherwise collect every one (validation).
    """

    strict: bool = True
    errors: list[ConfigFinding] = field(default_factory=list)
    #: (component, note) pairs, in order; one warning per component is made of them
    ignored: list[tuple[Component, str]] = field(default_factory=list)

    def error(self, error: ConfigError, component: Component | None = None, option: str | None = None) -> None:
        """Record (or, when strict, raise) ``error`` about ``component``'s ``option``."""
        if error.location is None and component is not None:
            error.location = component.location
        if self.strict:
            raise error
        self.errors.append(ConfigFinding(error, component, option))

    def ignore(self, component: Component, note: str) -> None:
        """Note an option (or a setting) of ``component`` that deltatrain accepts but does not use."""
        self.ignored.append((component, note))

    def ignored_notes(self) -> tuple[str, ...]:
        """``Component.note`` strings for the model summary."""
        return tuple(f"{component.name}.{note}" for component, note in self.ignored)


def read_options(
    component: Component,
    checks: Mapping[str, Check],
    ignored: Mapping[str, Check | None],
    resolution: Resolution,
) -> dict[str, Any]:
    """Check ``component``'s options: those in ``checks`` are parsed and returned, those in
    ``ignored`` (Rasa options without meaning here; a check, if given, still validates the value)
    are noted, anything else is an error listing the valid options."""
    result: dict[str, Any] = {}
    for key, value in component.options.items():
        name = key
        if key not in checks and key not in ignored and RENAMED_OPTIONS.get(key) in (*checks, *ignored):
            name = RENAMED_OPTIONS[key]
        try:
            if name in checks:
                if value is not None:
                    result[name] = checks[name](component.name, key, value)
            elif name in ignored or name in ALWAYS_IGNORED:
                check = ignored.get(name)
                if check is not None and value is not None:
                    check(component.name, key, value)
                resolution.ignore(component, key if name == key else f"{key} (Rasa's old name of {name})")
            else:
                valid = ", ".join(sorted({*checks, *ignored}))
                raise ConfigError(
                    f"{component.name}: unknown option '{key}'; valid options are {valid}; received {key}={thaw(value)!r}",
                    hint=f"remove '{key}' or fix its spelling under '- name: {component.name}'",
                )
        except ConfigError as error:
            resolution.error(error, component, key)
    return result


def fail(component: str, option: str, valid: str, value: Any) -> ConfigError:
    """The error for an invalid option value."""
    return ConfigError(
        f"{component}: option '{option}' must be {valid}; received {thaw(value)!r}",
        hint=f"fix '{option}' under '- name: {component}' in config.yml",
    )


def check_bool(component: str, option: str, value: Any) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise fail(component, option, "true or false", value)
    return value


def int_option(low: int, high: int | None = None) -> Check:
    """An integer in ``[low, high]`` (``high`` None: unbounded); 3.0 counts as 3."""

    def check(component: str, option: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            bounds = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
            raise fail(component, option, bounds, value)
        return value

    return check


def float_option(low: float, high: float, *, open_low: bool = False) -> Check:
    """A number in ``[low, high]`` (``(low, high]`` with ``open_low``)."""

    def check(component: str, option: str, value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or math.isnan(value) or value < low or value > high or (open_low and value <= low):
            raise fail(component, option, f"a number {'>' if open_low else '>='} {low} and <= {high}", value)
        return float(value)

    return check


def check_str(component: str, option: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise fail(component, option, "a non-empty string", value)
    return value


def choice(*choices: str) -> Check:
    """One of ``choices``."""

    def check(component: str, option: str, value: Any) -> str:
        if value not in choices:
            raise fail(component, option, "one of " + ", ".join(choices), value)
        return str(value)

    return check


def check_batch_size(component: str, option: str, value: Any) -> tuple[int, int]:
    """A batch size or Rasa's linear ramp ``[start, end]``; returned as ``(start, end)``."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) not in (1, 2) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise fail(component, option, "a positive integer or a list [start, end] of two", value)
    return (values[0], values[-1])
