"""The data model: plain, immutable objects independent of any file format.

Everything the loader reads from Rasa YAML ends up here; everything after the
loader (validation, fingerprint, decision, training) reads only these objects.
``location`` fields are excluded from equality so that moving an example to
another line does not make two data models differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Union

from pipeline.errors import Location

__all__ = [
    "Location",
    "EntitySpan",
    "NluExample",
    "Synonym",
    "RegexFeature",
    "LookupTable",
    "NluData",
    "EntityValue",
    "UserStep",
    "ActionStep",
    "SlotStep",
    "ActiveLoopStep",
    "CheckpointStep",
    "OrStep",
    "Step",
    "Story",
    "IntentDef",
    "EntityDef",
    "SlotDef",
    "FormDef",
    "Domain",
    "Component",
    "Config",
    "Project",
    "retrieval_action",
    "freeze",
    "thaw",
]


def _loc() -> Any:
    return field(default=None, compare=False, repr=False)


def freeze(value: Any) -> Any:
    """Turn nested dicts/lists into read-only mappings and tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of :func:`freeze`: plain dicts and lists, for JSON."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


# --------------------------------------------------------------------------- NLU


@dataclass(frozen=True)
class EntitySpan:
    """An entity annotated inside an example: ``text[start:end]`` is the surface form."""

    start: int
    end: int
    entity: str
    value: str  # normalised value (synonym target when annotated), else the surface text
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class NluExample:
    """One training sentence with its intent and entity annotations."""

    text: str
    intent: str  # base intent; for retrieval intents ``chitchat`` of ``chitchat/ask_name``
    entities: tuple[EntitySpan, ...] = ()
    response_key: str | None = None
    location: Location | None = _loc()

    @property
    def full_intent(self) -> str:
        """``intent/response_key`` for retrieval intents, else the intent."""
        return f"{self.intent}/{self.response_key}" if self.response_key else self.intent


@dataclass(frozen=True)
class Synonym:
    """Surface forms that map to one canonical ``value``."""

    value: str
    examples: tuple[str, ...]
    location: Location | None = _loc()


@dataclass(frozen=True)
class RegexFeature:
    """A named regular expression used as a feature (and by regex entity extraction)."""

    name: str
    patterns: tuple[str, ...]
    location: Location | None = _loc()


@dataclass(frozen=True)
class LookupTable:
    """A named list of phrases used as a feature."""

    name: str
    elements: tuple[str, ...]
    location: Location | None = _loc()


@dataclass(frozen=True)
class NluData:
    """All NLU training data of a project."""

    examples: tuple[NluExample, ...] = ()
    synonyms: tuple[Synonym, ...] = ()
    regexes: tuple[RegexFeature, ...] = ()
    lookups: tuple[LookupTable, ...] = ()

    @property
    def intents(self) -> tuple[str, ...]:
        """Sorted distinct base intents used by the examples."""
        return tuple(sorted({e.intent for e in self.examples}))

    @property
    def entity_types(self) -> tuple[str, ...]:
        """Sorted distinct entity types annotated in the examples."""
        return tuple(sorted({s.entity for e in self.examples for s in e.entities}))

    def merge(self, other: "NluData") -> "NluData":
        """Concatenate two NLU data sets (used when several files are read)."""
        return NluData(
            examples=self.examples + other.examples,
            synonyms=self.synonyms + other.synonyms,
            regexes=self.regexes + other.regexes,
            lookups=self.lookups + other.lookups,
        )

    def synonym_map(self) -> dict[str, str]:
        """Lower-cased surface form -> canonical value, from synonym blocks and annotations."""
        mapping: dict[str, str] = {}
        for example in self.examples:
            for span in example.entities:
                surface = example.text[span.start : span.end]
                if span.value != surface:
                    mapping[surface.lower()] = span.value
        for synonym in self.synonyms:
            for text in synonym.examples:
                mapping[text.lower()] = synonym.value
        return mapping


# ------------------------------------------------------------------ stories/rules


@dataclass(frozen=True)
class EntityValue:
    """An entity as it appears in a story step (no character offsets)."""

    entity: str
    value: Any = None
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class UserStep:
    """A user turn: an intent, optionally the text said and the entities extracted."""

    intent: str | None
    text: str | None = None
    entities: tuple[EntityValue, ...] = ()
    location: Location | None = _loc()


@dataclass(frozen=True)
class ActionStep:
    """The bot runs an action (or utters a response, or a form), or says a text (``bot:``, ``is_text``)."""

    name: str
    location: Location | None = _loc()
    #: ``bot: <text>`` (an end-to-end bot turn): ``name`` is what the bot says, not an action name
    is_text: bool = False


@dataclass(frozen=True)
class SlotStep:
    """``slot_was_set``: slots set by the previous action, with values when given."""

    slots: tuple[tuple[str, Any], ...]
    location: Location | None = _loc()
    #: slots written by name only (``- slot_was_set: [confirmed]``); their value depends on the
    #: slot's type and is settled by the loader (:func:`pipeline.data.loader.settle_bare_slot_names`)
    named_only: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActiveLoopStep:
    """``active_loop``: a form becomes active (name) or ends (``None``)."""

    name: str | None
    location: Location | None = _loc()


@dataclass(frozen=True)
class CheckpointStep:
    """``checkpoint``: story fragments are joined where names match."""

    name: str
    location: Location | None = _loc()


@dataclass(frozen=True)
class OrStep:
    """``or``: any one of the alternatives (user steps or slot steps) may happen."""

    alternatives: tuple[Union[UserStep, SlotStep], ...]
    location: Location | None = _loc()


Step = Union[UserStep, ActionStep, SlotStep, ActiveLoopStep, CheckpointStep, OrStep]


@dataclass(frozen=True)
class Story:
    """A story, a rule or a test story: a named list of steps."""

    name: str
    steps: tuple[Step, ...]
    kind: str = "story"  # "story" | "rule" | "test"
    condition: tuple[Step, ...] = ()  # rules only
    conversation_start: bool = False  # rules only
    wait_for_user_input: bool = True  # rules only
    location: Location | None = _loc()

    @property
    def is_rule(self) -> bool:
        return self.kind == "rule"


# ------------------------------------------------------------------------ domain


@dataclass(frozen=True)
class IntentDef:
    """An intent declared in the domain with its entity filter."""

    name: str
    use_entities: tuple[str, ...] | None = None  # None: all entities
    ignore_entities: tuple[str, ...] = ()
    location: Location | None = _loc()


@dataclass(frozen=True)
class EntityDef:
    """An entity declared in the domain with its roles and groups."""

    name: str
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    influence_conversation: bool = True
    location: Location | None = _loc()


SLOT_TYPES = ("text", "bool", "categorical", "float", "list", "any")


@dataclass(frozen=True)
class SlotDef:
    """A slot: its type, values (categorical), bounds (float) and mappings."""

    name: str
    type: str
    influence_conversation: bool = True
    values: tuple[str, ...] = ()
    min_value: float = 0.0
    max_value: float = 1.0
    initial_value: Any = None
    mappings: tuple[Mapping[str, Any], ...] = ()
    location: Location | None = _loc()
    #: where each of ``mappings`` starts (same order; empty when built from literals)
    mapping_locations: tuple[Location, ...] = field(default=(), compare=False, repr=False)

    def mapping_location(self, index: int) -> Location | None:
        """Where mapping ``index`` is written, else where the slot is."""
        return self.mapping_locations[index] if index < len(self.mapping_locations) else self.location


@dataclass(frozen=True)
class FormDef:
    """A form and the slots it requires."""

    name: str
    required_slots: tuple[str, ...] = ()
    location: Location | None = _loc()
    #: where each of ``required_slots`` is listed (same order; empty when built from literals)
    slot_locations: tuple[Location, ...] = field(default=(), compare=False, repr=False)

    def slot_location(self, index: int) -> Location | None:
        """Where required slot ``index`` is listed, else where the form is."""
        return self.slot_locations[index] if index < len(self.slot_locations) else self.location


@dataclass(frozen=True)
class Domain:
    """The assistant's universe: intents, entities, slots, responses, actions, forms."""

    intents: tuple[IntentDef, ...] = ()
    entities: tuple[EntityDef, ...] = ()
    slots: tuple[SlotDef, ...] = ()
    responses: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    actions: tuple[str, ...] = ()
    forms: tuple[FormDef, ...] = ()
    session_config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    e2e_actions: tuple[str, ...] = ()
    location: Location | None = _loc()

    @property
    def intent_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.intents)

    @property
    def entity_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entities)

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)

    @property
    def form_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.forms)

    @property
    def retrieval_actions(self) -> tuple[str, ...]:
        """Rasa's retrieval actions: ``utter_faq`` for the retrieval responses ``utter_faq/ask_price``."""
        return tuple(sorted({retrieval_action(name) for name in self.responses if retrieval_action(name) != name}))

    @property
    def action_names(self) -> tuple[str, ...]:
        """Every action the bot can run: custom actions, responses, retrieval actions, forms, defaults."""
        names = list(DEFAULT_ACTIONS)
        for name in (*self.actions, *self.responses.keys(), *self.retrieval_actions, *self.form_names, *self.e2e_actions):
            if name not in names:
                names.append(name)
        return tuple(names)

    @property
    def is_empty(self) -> bool:
        return not (self.intents or self.entities or self.slots or self.responses or self.actions or self.forms)


def retrieval_action(name: str) -> str:
    """``utter_faq`` for the retrieval response ``utter_faq/ask_price`` (the action that utters
    it); any other name unchanged."""
    return name.split("/", 1)[0] if name.startswith("utter_") and "/" in name else name


#: Rasa's built-in actions, always in the domain: Rasa 3.6's ``DEFAULT_ACTION_NAMES`` in its order, without
#: the internal rule-snippet marker ``...``. ``action_send_text`` came later (Rasa 3.7+), and
#: ``action_validate_slot_mappings`` is a custom action the user writes and lists under ``actions:``.
DEFAULT_ACTIONS = (
    "action_listen",
    "action_restart",
    "action_session_start",
    "action_default_fallback",
    "action_deactivate_loop",
    "action_revert_fallback_events",
    "action_default_ask_affirmation",
    "action_default_ask_rephrase",
    "action_two_stage_fallback",
    "action_unlikely_intent",
    "action_back",
    "action_extract_slots",
)

#: ``- action: restart`` in a story or rule: Rasa's story reader makes this event type name a ``Restarted``
#: event (the conversation starts over), not an action, so it needs no domain entry.
RESTART_EVENT = "restart"

#: Rasa's built-in intents, known even when the domain does not list them (sorted: only membership matters).
DEFAULT_INTENTS = ("back", "nlu_fallback", "out_of_scope", "restart", "session_start")
#: The slot a form sets to the slot it asks for next; always known, never featurized unless declared.
REQUESTED_SLOT = "requested_slot"


# ------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Component:
    """A pipeline component or policy, under its Rasa name, with its options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    location: Location | None = _loc()

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


@dataclass(frozen=True)
class Config:
    """config.yml: language, NLU pipeline, policies (defaults filled in)."""

    language: str = "en"
    pipeline: tuple[Component, ...] = ()
    policies: tuple[Component, ...] = ()
    recipe: str = "default.v1"
    assistant_id: str | None = None
    pipeline_is_default: bool = False
    policies_is_default: bool = False
    #: Rasa components we do not implement and how they were mapped (shown as warnings).
    notes: tuple[str, ...] = field(default=(), compare=False)

    def component(self, name: str) -> Component | None:
        """The first pipeline component or policy with this Rasa name."""
        for comp in (*self.pipeline, *self.policies):
            if comp.name == name:
                return comp
        return None


# ----------------------------------------------------------------------- project


@dataclass(frozen=True)
class Project:
    """Everything read from one assistant: config, domain, training and test data."""

    config: Config
    domain: Domain
    nlu: NluData
    stories: tuple[Story, ...] = ()  # stories and rules (``kind`` tells)
    test_nlu: NluData = field(default_factory=NluData)
    test_stories: tuple[Story, ...] = ()
    has_domain: bool = True
    files: tuple[str, ...] = field(default=(), compare=False)

    @property
    def rules(self) -> tuple[Story, ...]:
        return tuple(s for s in self.stories if s.is_rule)

    @property
    def plain_stories(self) -> tuple[Story, ...]:
        return tuple(s for s in self.stories if not s.is_rule)
