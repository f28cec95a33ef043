"""Label maps and entity tagging (BILOU or BIO) over tokens. Pure Python/NumPy.

Tag ids: 0 is ``O``; then per entity type in sorted order ``B-``, ``I-``,
``L-``, ``U-`` (BILOU) or ``B-``, ``I-`` (BIO). Roles and groups are
per-token labels with 0 meaning "none". :func:`allowed_transitions` gives
the tag grammar the decoder enforces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.data.model import EntitySpan, NluData, NluExample

from .tokenizer import Token

NONE_LABEL = "<none>"


@dataclass(frozen=True)
class LabelMaps:
    """Intents, entity types, roles and groups of a model, in id order."""

    intents: tuple[str, ...]
    entities: tuple[str, ...]
    roles: tuple[str, ...]  # without NONE_LABEL
    groups: tuple[str, ...]
    bilou: bool = True

    @classmethod
    def from_data(cls, data: NluData, *, bilou: bool) -> "LabelMaps":
        spans = [s for e in data.examples for s in e.entities]
        return cls(
            intents=data.intents,
            entities=data.entity_types,
            roles=tuple(sorted({s.role for s in spans if s.role})),
            groups=tuple(sorted({s.group for s in spans if s.group})),
            bilou=bilou,
        )

    @property
    def prefixes(self) -> str:
        return "BILU" if self.bilou else "BI"

    @property
    def tags(self) -> tuple[str, ...]:
        return ("O", *(f"{p}-{e}" for e in self.entities for p in self.prefixes))

    def tag_id(self, prefix: str, entity: str) -> int:
        return 1 + self.entities.index(entity) * len(self.prefixes) + self.prefixes.index(prefix)

    def split_tag(self, tag_id: int) -> tuple[str, str | None]:
        """``("B", "city")`` for a tag id; ``("O", None)`` for 0."""
        if tag_id == 0:
            return "O", None
        index, prefix = divmod(tag_id - 1, len(self.prefixes))
        return self.prefixes[prefix], self.entities[index]

    def get_config(self) -> dict[str, Any]:
        return {
            "intents": list(self.intents),
            "entities": list(self.entities),
            "roles": list(self.roles),
            "groups": list(self.groups),
            "bilou": self.bilou,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "LabelMaps":
        return cls(
            tuple(config["intents"]),
            tuple(config["entities"]),
            tuple(config["roles"]),
            tuple(config["groups"]),
            bool(config["bilou"]),
        )


def _span_tokens(span: EntitySpan, tokens: Sequence[Token]) -> list[int]:
    return [i for i, t in enumerate(tokens) if t.start < span.end and t.end > span.start]


def encode_entities(
    example: NluExample, tokens: Sequence[Token], labels: LabelMaps
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-token entity tag, role and group ids of a training example."""
    n = len(tokens)
    tags = np.zeros(n, dtype=np.int32)
    roles = np.zeros(n, dtype=np.int32)
    groups = np.zeros(n, dtype=np.int32)
    taken = np.zeros(n, dtype=bool)
    for span in sorted(example.entities, key=lambda s: (s.start, s.end)):
        if span.entity not in labels.entities:
            continue
        index = [i for i in _span_tokens(span, tokens) if not taken[i]]
        if not index:
            continue
        if labels.bilou and len(index) == 1:
            prefixes = ["U"]
        elif labels.bilou:
            prefixes = ["B", *["I"] * (len(index) - 2), "L"]
        else:
            prefixes = ["B", *["I"] * (len(index) - 1)]
        for i, prefix in zip(index, prefixes):
            tags[i] = labels.tag_id(prefix, span.entity)
            taken[i] = True
            if span.role in labels.roles:
                roles[i] = 1 + labels.roles.index(span.role)
            if span.group in labels.groups:
                groups[i] = 1 + labels.groups.index(span.group)
    return tags, roles, groups


def allowed_transitions(labels: LabelMaps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (start[K], transition[K, K], end[K]) of valid tag sequences."""
    tags = labels.tags
    k = len(tags)
    parts = [labels.split_tag(i) for i in range(k)]
    opens = {"B", "I"} if labels.bilou else set()  # prefixes after which the entity must continue

    def can_start(prefix: str) -> bool:
        return prefix in ("O", "B", "U")

    start = np.array([can_start(p) for p, _ in parts])
    end = np.array([p not in opens for p, _ in parts]) if labels.bilou else np.ones(k, dtype=bool)
    trans = np.zeros((k, k), dtype=bool)
    for i, (p1, e1) in enumerate(parts):
        for j, (p2, e2) in enumerate(parts):
            if labels.bilou:
                if p1 in ("B", "I"):
                    ok = p2 in ("I", "L") and e1 == e2
                else:
                    ok = can_start(p2)
            else:
                ok = p2 != "I" or (p1 in ("B", "I") and e1 == e2)
            trans[i, j] = ok
    if not labels.bilou:
        start = np.array([p != "I" for p, _ in parts])
    return start, trans, end


def decode_spans(tag_ids: Sequence[int], labels: LabelMaps) -> list[tuple[int, int, str]]:
    """Token spans ``(first, last, entity)`` of a valid tag sequence (lenient on invalid ones)."""
    spans: list[tuple[int, int, str]] = []
    current: tuple[int, str] | None = None
    for i, tag in enumerate(tag_ids):
        prefix, entity = labels.split_tag(int(tag))
        if current is not None and (prefix in ("O", "B", "U") or entity != current[1]):
            spans.append((current[0], i - 1, current[1]))
            current = None
        if entity is None:
            continue
        if prefix == "U":
            spans.append((i, i, entity))
        elif prefix == "L":
            spans.append((current[0] if current else i, i, entity))
            current = None
        elif current is None:
            current = (i, entity)
    if current is not None:
        spans.append((current[0], len(tag_ids) - 1, current[1]))
    return spans
