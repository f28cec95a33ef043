"""The JSON files kept beside (and inside) every model: decode and check their shape (pure).

``metadata.json``, ``fingerprint.json`` and ``metrics.json`` come from a store or
an archive that anyone with write access may have edited, so their types are
checked before any decision reads them: a problem is described in words
(``"metadata.json: finetunes_in_a_row must be a whole number >= 0, received '3'"``)
and the caller turns it into its own error (an unusable previous model means a
full retrain, never a traceback).
"""

from __future__ import annotations

import json
import math
from enum import Enum
from typing import Any, Callable

from pipeline.predictions import PREDICTIONS_KEY


class SideFile(str, Enum):
    """The JSON side files of a model, by file name."""

    METADATA = "metadata.json"
    FINGERPRINT = "fingerprint.json"
    METRICS = "metrics.json"


class SideFileError(ValueError):
    """A side file cannot be used; the message says which file, what is wrong and what was received."""


def decode_side_file(kind: SideFile, data: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Decode and check one side file; SideFileError when it is too big, not JSON or malformed."""
    if len(data) > max_bytes:
        raise SideFileError(f"{kind.value} is {len(data)} bytes, more than the limit of {max_bytes}")
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SideFileError(f"{kind.value} is not UTF-8 text (byte {exc.start})") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = f"{exc.msg} at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise SideFileError(f"{kind.value} is not valid JSON ({detail})") from exc
    problem = describe_problem(kind, value)
    if problem:
        raise SideFileError(f"{kind.value}: {problem}")
    return value


def describe_problem(kind: SideFile, value: Any) -> str | None:
    """What is wrong with the decoded side file ``value``, or None when it can be used."""
    if not isinstance(value, dict):
        return f"must hold a JSON object, received {_kind(value)}"
    return _CHECKS[kind](value)


def _metadata_problem(value: dict[str, Any]) -> str | None:
    finetunes = value.get("finetunes_in_a_row", 0)
    if finetunes is not None and (not _is_int(finetunes) or finetunes < 0):
        return f"finetunes_in_a_row must be a whole number >= 0, received {finetunes!r}"
    for key in ("name", "trained_at", "mode", "deltatrain_version"):
        if value.get(key) is not None and not isinstance(value[key], str):
            return f"{key} must be a string, received {_kind(value[key])} {value[key]!r}"
    if value.get("model_format") is not None and not isinstance(value["model_format"], (str, int)):
        return f"model_format must be a string, received {_kind(value['model_format'])}"
    for key in ("parts", "git", "finetuned_from", "data", "timings"):
        if value.get(key) is not None and not isinstance(value[key], dict):
            return f"{key} must be an object, received {_kind(value[key])}"
    commit = (value.get("git") or {}).get("commit")
    if commit is not None and not isinstance(commit, str):
        return f"git.commit must be a string, received {_kind(commit)}"
    return None


def _fingerprint_problem(value: dict[str, Any]) -> str | None:
    sections = value.get("sections", {})
    if not isinstance(sections, dict):
        return f"sections must be an object of section name -> hash, received {_kind(sections)}"
    bad = next((k for k, v in sections.items() if not isinstance(v, str)), None)
    if bad is not None:
        return f"sections.{bad} must be a hash string, received {_kind(sections[bad])}"
    for key in ("labels", "examples", "domain"):
        group = value.get(key, {})
        if not isinstance(group, dict):
            return f"{key} must be an object, received {_kind(group)}"
        for name, items in group.items():
            if not _is_string_list(items):
                return f"{key}.{name} must be a list of strings, received {_kind_of_list(items)}"
    if not _is_string_list(value.get("stories", [])):
        return f"stories must be a list of strings, received {_kind_of_list(value['stories'])}"
    if value.get("counts") is not None and not isinstance(value["counts"], dict):
        return f"counts must be an object, received {_kind(value['counts'])}"
    if value.get("model_format") is not None and not isinstance(value["model_format"], (str, int)):
        return f"model_format must be a string, received {_kind(value['model_format'])}"
    return None


def _metrics_problem(value: dict[str, Any]) -> str | None:
    for key, metric in value.items():
        if key == PREDICTIONS_KEY:  # the per-utterance test predictions (pipeline.predictions)
            if not isinstance(metric, dict) or not isinstance(metric.get("rows"), list):
                return f"{key} must be an object with a list of rows, received {_kind(metric)}"
            continue
        if metric is not None and not _is_number(metric):
            return f"{key} must be a number or null, received {_kind(metric)} {metric!r}"
    return None


_CHECKS: dict[SideFile, Callable[[dict[str, Any]], str | None]] = {
    SideFile.METADATA: _metadata_problem,
    SideFile.FINGERPRINT: _fingerprint_problem,
    SideFile.METRICS: _metrics_problem,
}


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind_of_list(value: Any) -> str:
    if not isinstance(value, list):
        return _kind(value)
    bad = next(item for item in value if not isinstance(item, str))
    return f"a list containing {_kind(bad)}"


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)
