"""Write data-model objects back to Rasa YAML (domain in archives, persisted NLU data)."""

from __future__ import annotations

from typing import Any

import yaml

from pipeline.data.annotations import render_annotated_text
from pipeline.data.model import Domain, NluData, thaw


class _Literal(str):
    """A string dumped as a YAML literal block (``|``)."""


def _literal_representer(dumper: yaml.SafeDumper, value: _Literal) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal_representer)


def render_domain_yaml(domain: Domain) -> str:
    """The domain as Rasa 3.1 YAML."""
    doc: dict[str, Any] = {"version": "3.1"}
    intents: list[Any] = []
    for intent in domain.intents:
        if intent.use_entities is None and not intent.ignore_entities:
            intents.append(intent.name)
        else:
            props: dict[str, Any] = {}
            if intent.use_entities is not None:
                props["use_entities"] = list(intent.use_entities)
            if intent.ignore_entities:
                props["ignore_entities"] = list(intent.ignore_entities)
            intents.append({intent.name: props})
    if intents:
        doc["intents"] = intents
    entities: list[Any] = []
    for entity in domain.entities:
        props = {k: list(v) for k, v in (("roles", entity.roles), ("groups", entity.groups)) if v}
        entities.append({entity.name: props} if props else entity.name)
    if entities:
        doc["entities"] = entities
    if domain.slots:
        doc["slots"] = {
            slot.name: {
                "type": slot.type,
                "influence_conversation": slot.influence_conversation,
                **({"values": list(slot.values)} if slot.values else {}),
                **({"min_value": slot.min_value, "max_value": slot.max_value} if slot.type == "float" else {}),
                **({"initial_value": thaw(slot.initial_value)} if slot.initial_value is not None else {}),
                "mappings": thaw(slot.mappings),
            }
            for slot in domain.slots
        }
    if domain.forms:
        doc["forms"] = {form.name: {"required_slots": list(form.required_slots)} for form in domain.forms}
    if domain.responses:
        doc["responses"] = thaw(domain.responses)
    if domain.actions:
        doc["actions"] = list(domain.actions)
    if domain.e2e_actions:
        doc["e2e_actions"] = list(domain.e2e_actions)
    if domain.session_config:
        doc["session_config"] = thaw(domain.session_config)
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def render_nlu_yaml(nlu: NluData) -> str:
    """NLU training data as Rasa 3.1 YAML (examples grouped by intent)."""
    by_intent: dict[str, list[str]] = {}
    for example in nlu.examples:
        by_intent.setdefault(example.full_intent, []).append(render_annotated_text(example.text, example.entities))
    items: list[dict[str, Any]] = [
        {"intent": intent, "examples": _Literal("".join(f"- {t}\n" for t in texts))}
        for intent, texts in by_intent.items()
    ]
    items += [{"synonym": s.value, "examples": _Literal("".join(f"- {t}\n" for t in s.examples))} for s in nlu.synonyms]
    items += [{"regex": r.name, "examples": _Literal("".join(f"- {t}\n" for t in r.patterns))} for r in nlu.regexes]
    items += [{"lookup": t.name, "examples": _Literal("".join(f"- {e}\n" for e in t.elements))} for t in nlu.lookups]
    return yaml.dump({"version": "3.1", "nlu": items}, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
