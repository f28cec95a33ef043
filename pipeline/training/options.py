"""Checks for component/policy options in config.yml, shared by the NLU and dialogue settings.

A check is ``check(component, option, value) -> parsed value`` and raises a
ConfigError that names the component and option, says what is valid and ends
with what was received.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from pipeline.data.model import thaw
from pipeline.errors import ConfigError

Check = Callable[[str, str, Any], Any]


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


def check_batch_size(component: str, option: str, value: Any) -> tuple[int, int]:
    """A batch size or Rasa's linear ramp ``[start, end]``; returned as ``(start, end)``."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) not in (1, 2) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise fail(component, option, "a positive integer or a list [start, end] of two", value)
    return (values[0], values[-1])
