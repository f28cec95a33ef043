"""Inline entity annotations in training examples: ``[text](type)`` and friends.

Supported forms, as in Rasa 2.x/3.x::

    [Berlin](city)                          entity type
    [NYC](city:New York City)               old synonym form: type and value
    [Berlin]{"entity": "city", "role": "destination", "value": "BER", "group": "1"}
    [Berlin][{"entity": "city"}, {"entity": "location"}]   several entities on one span
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pipeline.data.model import EntitySpan

ENTITY_PATTERN = re.compile(
    r"\[(?P<text>[^\]]+?)\]"
    r"(?:\((?P<entity>[^:)]+?)(?::(?P<value>[^)]+))?\)"
    r"|\{(?P<dict>[^}]*?)\}"
    r"|\[(?P<list>\{.*?\})\])"
)
_ALLOWED_KEYS = {"entity", "value", "role", "group"}
#: ``[text]`` directly followed by ``(``, ``{`` or ``[`` that did not form an annotation, e.g. ``[Paris](city``
_BROKEN_PATTERN = re.compile(r"\[[^\[\]\n]+\][(\[{]")


@dataclass(frozen=True)
class AnnotationError(Exception):
    """A malformed annotation: ``column`` is 1-based within the example text."""

    message: str
    column: int
    hint: str


def parse_annotated_text(annotated: str) -> tuple[str, tuple[EntitySpan, ...]]:
    """Strip annotations from an example; return the plain text and its entity spans."""
    plain: list[str] = []
    spans: list[EntitySpan] = []
    cursor = 0
    length = 0
    for match in ENTITY_PATTERN.finditer(annotated):
        before = annotated[cursor : match.start()]
        plain.append(before)
        length += len(before)
        surface = match.group("text")
        start, end = length, length + len(surface)
        for entity, value, role, group in _entities_of(match):
            spans.append(
                EntitySpan(
                    start=start,
                    end=end,
                    entity=entity,
                    value=surface if value is None else str(value),
                    role=None if role is None else str(role),
                    group=None if group is None else str(group),
                )
            )
        plain.append(surface)
        length = end
        cursor = match.end()
    plain.append(annotated[cursor:])
    return "".join(plain), tuple(spans)


def find_unclosed_annotation(annotated: str) -> str | None:
    """The first ``[text](...``-like fragment left after parsing that is not a complete annotation, if any.

    Rasa reads such a fragment as plain text (the example loses its entity),
    which is almost always a missing ``)``, ``}`` or ``]``.
    """
    plain, _ = parse_annotated_text(annotated)
    match = _BROKEN_PATTERN.search(plain)
    if match is None:
        return None
    return plain[match.start() : match.start() + 40]


def find_ignored_keys(annotated: str) -> tuple[str, ...]:
    """Keys of JSON annotations that are not entity, value, role or group (Rasa ignores them too)."""
    ignored: set[str] = set()
    for match in ENTITY_PATTERN.finditer(annotated):
        raw = match.group("dict")
        source = "{" + raw + "}" if raw is not None else "[" + (match.group("list") or "") + "]"
        if match.group("entity") is not None:
            continue
        try:
            loaded = json.loads(source)
        except json.JSONDecodeError:
            continue
        for payload in loaded if isinstance(loaded, list) else [loaded]:
            if isinstance(payload, dict):
                ignored.update(str(key) for key in payload if key not in _ALLOWED_KEYS)
    return tuple(sorted(ignored))


def _entities_of(match: re.Match[str]) -> list[tuple[str, object, object, object]]:
    column = match.start() + 1
    if match.group("entity") is not None:
        entity = match.group("entity").strip()
        value = match.group("value")
        return [(entity, value.strip() if value is not None else None, None, None)]
    raw = match.group("dict")
    payloads: list[object]
    if raw is not None:
        source = "{" + raw + "}"
        payloads = [_load_json(source, column)]
    else:
        source = "[" + match.group("list") + "]"
        loaded = _load_json(source, column)
        payloads = loaded if isinstance(loaded, list) else [loaded]
    result = []
    for payload in payloads:
        if not isinstance(payload, dict) or not isinstance(payload.get("entity"), str) or not payload["entity"]:
            raise AnnotationError(
                f"entity annotation {source} has no \"entity\" name",
                column,
                'write it as [text]{"entity": "type"} (optionally with "value", "role", "group")',
            )
        result.append((payload["entity"], payload.get("value"), payload.get("role"), payload.get("group")))
    return result


def _load_json(source: str, column: int) -> object:
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            f"entity annotation {source} is not valid JSON ({exc.msg})",
            column,
            'use double quotes for keys and values, e.g. [Berlin]{"entity": "city", "role": "destination"}',
        ) from exc


def render_annotated_text(text: str, spans: tuple[EntitySpan, ...]) -> str:
    """Inverse of :func:`parse_annotated_text` (one entity per span, used for reports)."""
    parts: list[str] = []
    cursor = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < cursor:
            continue
        parts.append(text[cursor : span.start])
        surface = text[span.start : span.end]
        extra = {k: v for k, v in (("role", span.role), ("group", span.group)) if v is not None}
        if span.value != surface:
            extra["value"] = span.value
        if extra:
            parts.append(f"[{surface}]" + json.dumps({"entity": span.entity, **extra}))
        else:
            parts.append(f"[{surface}]({span.entity})")
        cursor = span.end
    parts.append(text[cursor:])
    return "".join(parts)
