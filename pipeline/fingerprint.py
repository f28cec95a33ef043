"""Sectioned content fingerprints and the change summary between two of them.

A fingerprint hashes the *parsed* content, section by section (canonical JSON,
sorted keys, sha256), so reordering examples, comments and whitespace never
change it. Besides the section hashes it keeps small per-intent digests of the
examples and the label/domain name lists, so that two fingerprints alone tell
*what* changed (intents added, examples added per intent, ...) without the
previous model or its data. Timestamps, paths and git SHAs never go in here;
they belong to the model metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Callable, Iterable, Iterator, Mapping

from pipeline import MODEL_FORMAT_VERSION
from pipeline.data.config import default_pipeline
from pipeline.data.model import (
    ActionStep,
    ActiveLoopStep,
    CheckpointStep,
    Component,
    NluExample,
    OrStep,
    Project,
    SlotStep,
    Story,
    UserStep,
    retrieval_action,
    thaw,
)
from pipeline.errors import Location

FINGERPRINT_FORMAT = 1


class Section(StrEnum):
    """A hashed section of the fingerprint; members are listed in the order reports list them."""

    CONFIG_NLU = "config_nlu"
    CONFIG_CORE = "config_core"
    CONFIG_OTHER = "config_other"
    CONFIG_NLU_WITHOUT_EPOCHS = "config_nlu_without_epochs"
    CONFIG_CORE_WITHOUT_EPOCHS = "config_core_without_epochs"
    DOMAIN_WITHOUT_RESPONSES = "domain_without_responses"
    RESPONSES = "responses"
    RETRIEVAL_RESPONSES = "retrieval_responses"
    NLU_EXAMPLES = "nlu_examples"
    NLU_LABELS = "nlu_labels"
    NLU_FEATURES = "nlu_features"
    STORIES = "stories"
    TEST_DATA = "test_data"
    MODEL_FORMAT = "model_format"


#: Section names, in the order reports list them.
SECTIONS: tuple[Section, ...] = tuple(Section)

#: What each section covers, for reports.
SECTION_TITLES: Mapping[Section, str] = {
    Section.CONFIG_NLU: "NLU pipeline config",
    Section.CONFIG_CORE: "dialogue policy config",
    Section.CONFIG_OTHER: "other config (recipe, assistant_id)",
    Section.CONFIG_NLU_WITHOUT_EPOCHS: "NLU pipeline config (ignoring epochs)",
    Section.CONFIG_CORE_WITHOUT_EPOCHS: "policy config (ignoring epochs)",
    Section.DOMAIN_WITHOUT_RESPONSES: "domain (intents, entities, slots, actions, forms)",
    Section.RESPONSES: "responses",
    Section.RETRIEVAL_RESPONSES: "retrieval responses (answers of the ResponseSelector)",
    Section.NLU_EXAMPLES: "NLU examples",
    Section.NLU_LABELS: "NLU labels (intents, entities, roles, groups, retrieval keys)",
    Section.NLU_FEATURES: "regexes, lookup tables and synonyms",
    Section.STORIES: "stories and rules",
    Section.TEST_DATA: "test data",
    Section.MODEL_FORMAT: "deltatrain model format",
}

#: Domain item kinds a finetune absorbs when added: they only grow the label and input spaces. The
#: fingerprint digests them one by one (``domain_items``) to tell such growth from other domain changes.
GROWABLE_DOMAIN_KINDS = ("intents", "entities")
_SINGULAR = {"intents": "intent", "entities": "entity"}

#: The top-level keys of ``fingerprint.json``, in the order it has always been written.
_JSON_KEYS = ("fingerprint_format", "model_format", "sections", "labels", "domain_items", "domain", "examples",
              "stories", "counts")


@dataclass(frozen=True, eq=False)
class Fingerprint(Mapping[str, Any]):
    """The content fingerprint of a project, stored as ``fingerprint.json`` beside each model.

    ``to_json``/``from_json`` convert to and from the stored form, which is unchanged (fingerprints
    written before this class existed load). It also reads like that form (``fp["counts"]``,
    ``dict(fp)``) for callers that handle it as JSON; equal to a mapping with the same JSON.
    """

    #: section -> sha256 of its canonical JSON (unknown names from other versions kept as strings)
    sections: Mapping[str, str]
    #: NLU label names: intents, retrieval_intents, entities, roles (``entity:role``), groups
    labels: Mapping[str, tuple[str, ...]]
    #: per-item digests of the domain's intents and entities, and one of the rest; ``None`` in old fingerprints
    domain_items: Mapping[str, Any] | None
    #: the domain's names per kind: intents, entities, slots, actions, forms, responses
    domain: Mapping[str, tuple[str, ...]]
    #: intent -> sorted digests of its examples
    examples: Mapping[str, tuple[str, ...]]
    #: sorted digests of the stories and rules
    stories: tuple[str, ...]
    counts: Mapping[str, int]
    model_format: str = MODEL_FORMAT_VERSION
    fingerprint_format: int = FINGERPRINT_FORMAT
    #: top-level keys this version does not know (a newer writer's), kept so ``to_json`` returns them
    extra: Mapping[str, Any] = field(default_factory=dict)

    def section(self, name: Section) -> str | None:
        """The hash of one section (``None``: not in this fingerprint)."""
        return self.sections.get(name)

    def to_json(self) -> dict[str, Any]:
        """The stored JSON form (plain dicts and lists)."""
        return dict(self._json)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Fingerprint:
        """Read the stored form; missing groups are empty (``domain_items``: ``None``)."""
        if isinstance(value, Fingerprint):
            return value
        sections = {_section_name(k): str(v) for k, v in (value.get("sections") or {}).items()}
        items = value.get("domain_items")
        return cls(
            sections=sections,
            labels=_name_lists(value.get("labels")),
            domain_items=dict(items) if isinstance(items, Mapping) and items else None,
            domain=_name_lists(value.get("domain")),
            examples=_name_lists(value.get("examples")),
            stories=tuple(value.get("stories") or ()),
            counts=dict(value.get("counts") or {}),
            model_format=str(value.get("model_format") or ""),
            fingerprint_format=int(value.get("fingerprint_format") or FINGERPRINT_FORMAT),
            extra={k: v for k, v in value.items() if k not in _JSON_KEYS},
        )

    @cached_property
    def _json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "fingerprint_format": self.fingerprint_format,
            "model_format": self.model_format,
            "sections": {str(k): v for k, v in self.sections.items()},
            "labels": {k: list(v) for k, v in self.labels.items()},
            "domain_items": None if self.domain_items is None else thaw(self.domain_items),
            "domain": {k: list(v) for k, v in self.domain.items()},
            "examples": {k: list(v) for k, v in self.examples.items()},
            "stories": list(self.stories),
            "counts": dict(self.counts),
            **self.extra,
        }
        if self.domain_items is None:
            del document["domain_items"]
        return document

    def __getitem__(self, key: str) -> Any:
        return self._json[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._json)

    def __len__(self) -> int:
        return len(self._json)


def _section_name(name: str) -> str:
    """A known section as its :class:`Section`, an unknown one as it was written."""
    try:
        return Section(name)
    except ValueError:
        return str(name)


def _name_lists(group: Any) -> dict[str, tuple[str, ...]]:
    return {str(k): tuple(v) for k, v in (group or {}).items()}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal content gives equal text."""
    return json.dumps(thaw(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    """sha256 hex digest of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def _components(components: Iterable[Component], *, drop_epochs: bool = False) -> list[Any]:
    result = []
    for comp in components:
        options = {k: v for k, v in thaw(comp.options).items() if not (drop_epochs and k == "epochs")}
        result.append({"name": comp.name, "options": options})
    return result


def _example_key(example: NluExample) -> Any:
    entities = sorted(
        (s.start, s.end, s.entity, s.value, s.role or "", s.group or "") for s in example.entities
    )
    return [example.text.strip(), example.full_intent, entities]


def _example_digest(example: NluExample) -> str:
    return digest(_example_key(example))[:16]


def _step_json(step: Any) -> Any:
    if isinstance(step, UserStep):
        entities = sorted(canonical_json([e.entity, e.value, e.role, e.group]) for e in step.entities)
        return {"user": step.intent, "text": step.text, "entities": entities}
    if isinstance(step, ActionStep):
        return {"bot": step.name} if step.is_text else {"action": step.name}
    if isinstance(step, SlotStep):
        return {"slots": [[k, thaw(v)] for k, v in step.slots]}
    if isinstance(step, ActiveLoopStep):
        return {"active_loop": step.name}
    if isinstance(step, CheckpointStep):
        return {"checkpoint": step.name}
    if isinstance(step, OrStep):
        return {"or": sorted(canonical_json(_step_json(a)) for a in step.alternatives)}
    raise TypeError(f"unknown step {step!r}")


def story_digest(story: Story) -> str:
    """Digest of one story/rule's content; its name is not part of it."""
    return digest(
        {
            "kind": "rule" if story.is_rule else "story",
            "steps": [_step_json(s) for s in story.steps],
            "condition": [_step_json(s) for s in story.condition],
            "conversation_start": story.conversation_start,
            "wait_for_user_input": story.wait_for_user_input,
        }
    )[:16]


def retrieval_responses_section(project: Project) -> Any | None:
    """What the NLU model's ResponseSelector stores besides its weights: the retrieval responses
    (``utter_faq/ask_price``); ``None`` (no section) without a selector or retrieval intents,
    so that fingerprints of assistants without them stay as they were."""
    pipeline = project.config.pipeline or default_pipeline(project.config.language)
    if not any(c.name == "ResponseSelector" for c in pipeline):
        return None
    if not any(e.response_key for e in project.nlu.examples):
        return None
    responses = {k: thaw(v) for k, v in project.domain.responses.items() if retrieval_action(k) != k}
    return responses or None


def compute_fingerprint(project: Project) -> Fingerprint:
    """The fingerprint of a project, stored beside each model (``to_json()``)."""
    config, domain, nlu = project.config, project.domain, project.nlu
    examples_by_intent: dict[str, list[str]] = {}
    for example in nlu.examples:
        examples_by_intent.setdefault(example.intent, []).append(_example_digest(example))
    labels = {
        "intents": sorted({e.intent for e in nlu.examples}),
        "retrieval_intents": sorted({e.full_intent for e in nlu.examples if e.response_key}),
        "entities": sorted({s.entity for e in nlu.examples for s in e.entities}),
        "roles": sorted({f"{s.entity}:{s.role}" for e in nlu.examples for s in e.entities if s.role}),
        "groups": sorted({f"{s.entity}:{s.group}" for e in nlu.examples for s in e.entities if s.group}),
    }
    domain_names = {
        "has_domain": project.has_domain,
        "intents": [[i.name, i.use_entities, list(i.ignore_entities)] for i in sorted(domain.intents, key=lambda i: i.name)],
        "entities": [[e.name, sorted(e.roles), sorted(e.groups), e.influence_conversation] for e in sorted(domain.entities, key=lambda e: e.name)],
        "slots": [
            [s.name, s.type, s.influence_conversation, list(s.values), s.min_value, s.max_value, thaw(s.initial_value), thaw(s.mappings)]
            for s in sorted(domain.slots, key=lambda s: s.name)
        ],
        "actions": sorted(domain.actions),
        "forms": [[f.name, list(f.required_slots)] for f in sorted(domain.forms, key=lambda f: f.name)],
        "session_config": thaw(domain.session_config),
        "e2e_actions": sorted(domain.e2e_actions),
    }
    features = {
        "regexes": sorted([r.name, sorted(r.patterns)] for r in nlu.regexes),
        "lookups": sorted([t.name, sorted(t.elements)] for t in nlu.lookups),
        "synonyms": sorted(nlu.synonym_map().items()),
    }
    stories = sorted(story_digest(s) for s in project.stories)
    test_data = {
        "nlu": sorted(_example_digest(e) for e in project.test_nlu.examples),
        "stories": sorted(story_digest(s) for s in project.test_stories),
    }
    sections: dict[str, str] = {
        Section.CONFIG_NLU: digest({"language": config.language, "pipeline": _components(config.pipeline)}),
        Section.CONFIG_CORE: digest({"policies": _components(config.policies)}),
        Section.CONFIG_OTHER: digest({"recipe": config.recipe, "assistant_id": config.assistant_id}),
        Section.CONFIG_NLU_WITHOUT_EPOCHS: digest(
            {"language": config.language, "pipeline": _components(config.pipeline, drop_epochs=True)}
        ),
        Section.CONFIG_CORE_WITHOUT_EPOCHS: digest({"policies": _components(config.policies, drop_epochs=True)}),
        Section.DOMAIN_WITHOUT_RESPONSES: digest(domain_names),
        Section.RESPONSES: digest(thaw(domain.responses)),
        Section.NLU_EXAMPLES: digest(sorted(canonical_json(_example_key(e)) for e in nlu.examples)),
        Section.NLU_LABELS: digest(labels),
        Section.NLU_FEATURES: digest(features),
        Section.STORIES: digest(stories),
        Section.TEST_DATA: digest(test_data),
        Section.MODEL_FORMAT: digest(MODEL_FORMAT_VERSION),
    }
    retrieval = retrieval_responses_section(project)
    if retrieval is not None:
        sections[Section.RETRIEVAL_RESPONSES] = digest(retrieval)
    domain_items = {
        # per intent/entity digests and one for the rest: tells "the domain only gained intents/entities"
        **{kind: {row[0]: digest(row) for row in domain_names[kind]} for kind in GROWABLE_DOMAIN_KINDS},
        "other": digest({k: v for k, v in domain_names.items() if k not in GROWABLE_DOMAIN_KINDS}),
    }
    return Fingerprint(
        sections=sections,
        labels=_name_lists(labels),
        domain_items=domain_items,
        domain=_name_lists({
            "intents": sorted(domain.intent_names),
            "entities": sorted(domain.entity_names),
            "slots": sorted(domain.slot_names),
            "actions": sorted(domain.actions),
            "forms": sorted(domain.form_names),
            "responses": sorted(domain.responses.keys()),
        }),
        examples={intent: tuple(sorted(d)) for intent, d in sorted(examples_by_intent.items())},
        stories=tuple(stories),
        counts={
            "examples": len(nlu.examples),
            "intents": len(labels["intents"]),
            "entities": len(labels["entities"]),
            "stories": len(project.plain_stories),
            "rules": len(project.rules),
            "test_examples": len(project.test_nlu.examples),
            "test_stories": len(project.test_stories),
        },
    )


# --------------------------------------------------------------------- changes


@dataclass(frozen=True)
class ChangeSummary:
    """What differs between a previous and a current fingerprint."""

    changed_sections: tuple[Section, ...] = ()
    intents_added: tuple[str, ...] = ()
    intents_removed: tuple[str, ...] = ()
    entities_added: tuple[str, ...] = ()
    entities_removed: tuple[str, ...] = ()
    roles_added: tuple[str, ...] = ()
    roles_removed: tuple[str, ...] = ()
    groups_added: tuple[str, ...] = ()
    groups_removed: tuple[str, ...] = ()
    examples_added: Mapping[str, int] = field(default_factory=dict)
    examples_removed: Mapping[str, int] = field(default_factory=dict)
    stories_added: int = 0
    stories_removed: int = 0
    domain_added: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    domain_removed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: where an added intent first appears, e.g. {"greet_formal": "data/nlu.yml:42"}
    locations: Mapping[str, str] = field(default_factory=dict)
    #: why a changed domain is more than added intents/entities (empty: it only gained those)
    domain_not_growth: tuple[str, ...] = ()

    @property
    def domain_only_grew(self) -> bool:
        """The domain changed, and only by gaining intents and/or entities."""
        return self.changed(Section.DOMAIN_WITHOUT_RESPONSES) and not self.domain_not_growth

    def changed(self, *sections: Section) -> bool:
        """Whether any of the given sections changed."""
        return any(s in self.changed_sections for s in sections)

    @property
    def nothing_changed(self) -> bool:
        """Nothing but the test data changed."""
        return not [s for s in self.changed_sections if s != Section.TEST_DATA]

    @property
    def total_examples_added(self) -> int:
        """NLU examples added over all intents."""
        return sum(self.examples_added.values())

    @property
    def total_examples_removed(self) -> int:
        """NLU examples removed (or edited) over all intents."""
        return sum(self.examples_removed.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form for reports."""
        return {
            "changed_sections": [str(s) for s in self.changed_sections],
            "intents_added": list(self.intents_added),
            "intents_removed": list(self.intents_removed),
            "entities_added": list(self.entities_added),
            "entities_removed": list(self.entities_removed),
            "roles_added": list(self.roles_added),
            "roles_removed": list(self.roles_removed),
            "groups_added": list(self.groups_added),
            "groups_removed": list(self.groups_removed),
            "examples_added": dict(self.examples_added),
            "examples_removed": dict(self.examples_removed),
            "stories_added": self.stories_added,
            "stories_removed": self.stories_removed,
            "domain_added": {k: list(v) for k, v in self.domain_added.items()},
            "domain_removed": {k: list(v) for k, v in self.domain_removed.items()},
            "locations": dict(self.locations),
            "domain_not_growth": list(self.domain_not_growth),
        }


def _diff(old: Iterable[str], new: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    old_set, new_set = set(old), set(new)
    return tuple(sorted(new_set - old_set)), tuple(sorted(old_set - new_set))


def _multiset_diff(old: Iterable[str], new: Iterable[str]) -> tuple[int, int]:
    old_c, new_c = Counter(old), Counter(new)
    return sum((new_c - old_c).values()), sum((old_c - new_c).values())


#: The per-item digests (examples per intent, stories): most of a fingerprint's size, and needed only
#: to say *what* changed in their section. A reader gets them (:func:`details_of`) only when that
#: section's hash differs, so a store can keep them out of its manifest (``fingerprint_head``).
DETAIL_SECTIONS: Mapping[str, Section] = {"examples": Section.NLU_EXAMPLES, "stories": Section.STORIES}


class DeferredFingerprint(Mapping[str, Any]):
    """A fingerprint's stored JSON whose per-item digests (:data:`DETAIL_SECTIONS`) are loaded
    on first access, e.g. a store's manifest carries the head and ``fingerprint.json`` the rest.
    :func:`summarize_changes` asks for them only when their section changed, so comparing equal
    fingerprints never loads. Iterating (``dict(fp)``) loads them. ``load`` returns the whole
    stored fingerprint; whatever it raises is raised by the access that needed it."""

    def __init__(self, head: Mapping[str, Any], load: Callable[[], Mapping[str, Any]]) -> None:
        self.head: dict[str, Any] = {k: v for k, v in head.items() if k not in DETAIL_SECTIONS}
        self._load: Callable[[], Mapping[str, Any]] | None = load
        self._details: dict[str, Any] = {}

    @property
    def loaded(self) -> bool:
        """Whether the per-item digests were loaded."""
        return self._load is None

    def _details_now(self) -> dict[str, Any]:
        if self._load is not None:
            full = self._load()
            self._details = {k: full[k] for k in DETAIL_SECTIONS if k in full}
            self._load = None
        return self._details

    def __getitem__(self, key: str) -> Any:
        if key in self.head:
            return self.head[key]
        if key not in DETAIL_SECTIONS:
            raise KeyError(key)
        return self._details_now()[key]

    def __iter__(self) -> Iterator[str]:
        yield from self.head
        yield from self._details_now()

    def __len__(self) -> int:
        return len(self.head) + len(self._details_now())

    def __repr__(self) -> str:
        return f"DeferredFingerprint({self.head!r}, details={'loaded' if self.loaded else 'not loaded'})"


def head_of(fingerprint: Fingerprint | Mapping[str, Any]) -> Fingerprint:
    """The fingerprint without its per-item digests (a :class:`DeferredFingerprint` is not made
    to load them)."""
    if isinstance(fingerprint, Fingerprint):
        return fingerprint
    if isinstance(fingerprint, DeferredFingerprint):
        return Fingerprint.from_json(fingerprint.head)
    return Fingerprint.from_json({k: v for k, v in fingerprint.items() if k not in DETAIL_SECTIONS})


def details_of(fingerprint: Fingerprint | Mapping[str, Any], key: str) -> Any:
    """One group of per-item digests: ``examples`` (intent -> digests) or ``stories`` (digests)."""
    if isinstance(fingerprint, Fingerprint):
        return getattr(fingerprint, key)
    value = fingerprint.get(key)
    return _name_lists(value) if key == "examples" else tuple(value or ())


def summarize_changes(
    previous: Fingerprint | Mapping[str, Any], current: Fingerprint | Mapping[str, Any], project: Project | None = None
) -> ChangeSummary:
    """Compare two fingerprints (or their stored JSON); ``project`` (the current data) adds source locations.

    The per-item digests are read only for a section whose hash changed: equal hashes mean equal
    items, so nothing was added or removed there."""
    old, new = head_of(previous), head_of(current)
    changed = tuple(s for s in SECTIONS if old.section(s) != new.section(s))
    old_labels, new_labels = old.labels, new.labels
    intents_added, intents_removed = _diff(old_labels.get("intents", []), new_labels.get("intents", []))
    entities_added, entities_removed = _diff(old_labels.get("entities", []), new_labels.get("entities", []))
    roles_added, roles_removed = _diff(old_labels.get("roles", []), new_labels.get("roles", []))
    groups_added, groups_removed = _diff(old_labels.get("groups", []), new_labels.get("groups", []))
    examples_changed = Section.NLU_EXAMPLES in changed
    old_examples = details_of(previous, "examples") if examples_changed else {}
    new_examples = details_of(current, "examples") if examples_changed else {}
    added: dict[str, int] = {}
    removed: dict[str, int] = {}
    for intent in sorted(set(old_examples) | set(new_examples)):
        plus, minus = _multiset_diff(old_examples.get(intent, []), new_examples.get(intent, []))
        if plus:
            added[intent] = plus
        if minus:
            removed[intent] = minus
    stories_added, stories_removed = (
        _multiset_diff(details_of(previous, "stories"), details_of(current, "stories"))
        if Section.STORIES in changed else (0, 0)
    )
    domain_added: dict[str, tuple[str, ...]] = {}
    domain_removed: dict[str, tuple[str, ...]] = {}
    old_domain, new_domain = old.domain, new.domain
    for key in ("intents", "entities", "slots", "actions", "forms", "responses"):
        plus_names, minus_names = _diff(old_domain.get(key, []), new_domain.get(key, []))
        if plus_names:
            domain_added[key] = plus_names
        if minus_names:
            domain_removed[key] = minus_names
    locations = _locations(project, intents_added, entities_added) if project else {}
    not_growth: tuple[str, ...] = ()
    if Section.DOMAIN_WITHOUT_RESPONSES in changed:
        not_growth = _domain_not_growth(old.domain_items, new.domain_items)
    return ChangeSummary(
        changed_sections=changed,
        intents_added=intents_added,
        intents_removed=intents_removed,
        entities_added=entities_added,
        entities_removed=entities_removed,
        roles_added=roles_added,
        roles_removed=roles_removed,
        groups_added=groups_added,
        groups_removed=groups_removed,
        examples_added=added,
        examples_removed=removed,
        stories_added=stories_added,
        stories_removed=stories_removed,
        domain_added=domain_added,
        domain_removed=domain_removed,
        locations=locations,
        domain_not_growth=not_growth,
    )


def _domain_not_growth(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Why the domain change is more than added intents/entities (empty: only those were added)."""
    if not old or not new:
        return ("the previous model's fingerprint has no per-item domain digests",)
    reasons: list[str] = []
    for key in GROWABLE_DOMAIN_KINDS:
        what = _SINGULAR[key]
        before, after = old.get(key, {}), new.get(key, {})
        reasons += [f"{what} `{n}` removed from the domain" for n in sorted(set(before) - set(after))]
        reasons += [f"{what} `{n}` changed in the domain" for n in sorted(set(before) & set(after)) if before[n] != after[n]]
    if old.get("other") != new.get("other"):
        reasons.append("slots, actions, forms or session settings changed in the domain")
    return tuple(reasons)


def _locations(project: Project, intents: Iterable[str], entities: Iterable[str]) -> dict[str, str]:
    wanted_intents, wanted_entities = set(intents), set(entities)
    found: dict[str, str] = {}
    for example in project.nlu.examples:
        loc: Location | None = example.location
        if loc is None:
            continue
        if example.intent in wanted_intents and example.intent not in found:
            found[example.intent] = str(loc)
        for span in example.entities:
            if span.entity in wanted_entities and span.entity not in found:
                found[span.entity] = str(loc)
    for intent in project.domain.intents:
        if intent.name in wanted_intents and intent.name not in found and intent.location:
            found[intent.name] = str(intent.location)
    return found
