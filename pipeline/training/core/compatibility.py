"""Can a saved dialogue model be finetuned? The dialogue model's domain sections and the finetune check.

A safety net: the decision (:mod:`pipeline.decision`) already chose to finetune from the
fingerprints; this checks the saved model itself before its weights are touched, with the
decision's finetune rule (:func:`pipeline.decision.finetune_blockers`) applied to the saved
domain sections and settings. A dialogue model can be finetuned when, compared with the saved model:

* the model format is the same (``pipeline.MODEL_FORMAT_VERSION`` and ``CORE_FORMAT``);
* the domain's dialogue sections are the same -- intents (with their entity
  filters), entities (roles, groups, influence), slots that influence the
  conversation, actions, forms -- because they define the ML policy's inputs
  and outputs (Rasa's rule: finetuning needs an unchanged domain), except that
  intents and entities may be *added*: they only add input features, which the
  finetune grows (:mod:`.growth`; existing items must stay as they were);
* the policies are the same, and TEDPolicy's network options are the same
  (``epochs``, ``priority`` and ``ranking_length`` may change);
* the saved TEDPolicy was trained.

Each section is hashed separately with the fingerprint's hash (:func:`pipeline.fingerprint.digest`),
and the sections themselves are saved, so a refusal names what changed:
``slot 'city' changed in the domain``. :func:`check_finetune_compatible` reads the
saved JSON files only; everything else here is pure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from pipeline import MODEL_FORMAT_VERSION
from pipeline.data.model import Config, Domain, thaw
from pipeline.decision import Part, finetune_blockers
from pipeline.errors import ConfigError, FinetuneRefused
from pipeline.fingerprint import GROWABLE_DOMAIN_KINDS, ChangeSummary, Section, canonical_json, digest

from . import layout
from .settings import CoreSettings, resolve_settings

__all__ = [
    "DOMAIN_SECTIONS",
    "compute_domain_sections",
    "compute_domain_fingerprint",
    "describe_domain_changes",
    "describe_settings_changes",
    "check_finetune_compatible",
]

DOMAIN_SECTIONS = ("intents", "entities", "slots", "actions", "forms")
_SINGULAR = {"intents": "intent", "entities": "entity", "slots": "slot", "actions": "action", "forms": "form"}


def compute_domain_sections(domain: Domain) -> dict[str, Any]:
    """The parts of the domain the dialogue model depends on, canonically ordered."""
    return {
        "intents": sorted(
            (
                {
                    "name": i.name,
                    "use_entities": None if i.use_entities is None else sorted(i.use_entities),
                    "ignore_entities": sorted(i.ignore_entities),
                }
                for i in domain.intents
            ),
            key=lambda d: d["name"],
        ),
        "entities": sorted(
            (
                {
                    "name": e.name,
                    "roles": sorted(e.roles),
                    "groups": sorted(e.groups),
                    "influence_conversation": e.influence_conversation,
                }
                for e in domain.entities
            ),
            key=lambda d: d["name"],
        ),
        "slots": sorted(
            (
                {
                    "name": s.name,
                    "type": s.type,
                    "values": list(s.values),
                    "min_value": float(s.min_value),
                    "max_value": float(s.max_value),
                    "initial_value": thaw(s.initial_value),
                }
                for s in domain.slots
                if s.influence_conversation
            ),
            key=lambda d: d["name"],
        ),
        "actions": sorted(set(domain.action_names)),
        "forms": sorted(
            ({"name": f.name, "required_slots": list(f.required_slots)} for f in domain.forms),
            key=lambda d: d["name"],
        ),
    }


def compute_domain_fingerprint(sections: Mapping[str, Any]) -> dict[str, str]:
    """sha256 of each section's canonical JSON, plus ``all`` over every section."""
    hashes = {name: digest(sections.get(name)) for name in DOMAIN_SECTIONS}
    hashes["all"] = digest(hashes)
    return hashes


def _by_name(items: Any) -> dict[str, Any]:
    return {item if isinstance(item, str) else item["name"]: item for item in items or ()}


#: Domain sections whose additions a finetune absorbs by growing the input features (the finetune rule's).
GROWABLE_SECTIONS = GROWABLE_DOMAIN_KINDS


def describe_domain_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], *, allow_growth: bool = False
) -> list[str]:
    """Human reasons for every difference: ``intent 'x' added``, ``slot 'y' changed``;
    with ``allow_growth``, added intents and entities are not reasons."""
    reasons = []
    for section in DOMAIN_SECTIONS:
        before, after = _by_name(old.get(section)), _by_name(new.get(section))
        what = _SINGULAR[section]
        for name in sorted(set(after) - set(before)):
            if allow_growth and section in GROWABLE_SECTIONS:
                continue
            reasons.append(f"{what} '{name}' added to the domain")
        for name in sorted(set(before) - set(after)):
            reasons.append(f"{what} '{name}' removed from the domain")
        for name in sorted(set(before) & set(after)):
            if canonical_json(before[name]) != canonical_json(after[name]):
                reasons.append(f"{what} '{name}' changed in the domain")
    return reasons


def describe_settings_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human reasons for differences of two ``CoreSettings.compatibility_key()``."""
    reasons = []
    if old.get("policies") != new.get("policies"):
        reasons.append(
            f"policies changed from {', '.join(old.get('policies', [])) or 'none'} "
            f"to {', '.join(new.get('policies', [])) or 'none'}"
        )
        return reasons
    before, after = old.get("TEDPolicy") or {}, new.get("TEDPolicy") or {}
    for option in sorted(set(before) | set(after)):
        if before.get(option) != after.get(option):
            reasons.append(f"TEDPolicy option '{option}' changed from {before.get(option)!r} to {after.get(option)!r}")
    return reasons


def _read_json(directory: Path, name: str) -> Any:
    path = directory / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FinetuneRefused([f"no dialogue model in {directory} ({name} is missing)"]) from None
    except (OSError, ValueError) as exc:
        raise FinetuneRefused([f"{path} cannot be read ({exc})"]) from exc


def check_finetune_compatible(previous_dir: Path, domain: Domain, config: Config) -> None:
    """Raise FinetuneRefused with every reason the saved model cannot be finetuned.

    The safety net behind the decision, which judged from fingerprints only. Cheap: reads the saved JSON
    files only (no weights, no TensorFlow).
    """
    directory = Path(previous_dir)
    fmt = _read_json(directory, layout.FORMAT_FILE)
    received = (fmt.get("kind"), fmt.get("model_format_version"), fmt.get("core_format"))
    expected = (layout.MODEL_KIND, MODEL_FORMAT_VERSION, layout.CORE_FORMAT)
    if received != expected:
        raise FinetuneRefused(
            [
                f"the previous dialogue model has format kind={received[0]!r} version={received[1]!r} "
                f"core_format={received[2]!r}; this deltatrain writes kind={expected[0]!r} "
                f"version={expected[1]!r} core_format={expected[2]!r}"
            ]
        )
    saved_domain = _read_json(directory, layout.DOMAIN_FILE)
    sections = compute_domain_sections(domain)
    domain_changed = compute_domain_fingerprint(sections)["all"] != saved_domain.get("fingerprint", {}).get("all")
    domain_changes = (
        describe_domain_changes(saved_domain.get("sections", {}), sections, allow_growth=True) if domain_changed else []
    )
    try:
        new_settings = resolve_settings(config)
    except ConfigError as exc:
        raise FinetuneRefused([f"the new policy config is invalid: {exc.message}"]) from exc
    try:
        old_settings = CoreSettings.from_config(_read_json(directory, layout.CONFIG_FILE))
    except (KeyError, TypeError) as exc:
        raise FinetuneRefused([f"{directory / layout.CONFIG_FILE} is not a policy config ({exc})"]) from exc
    config_changes = describe_settings_changes(old_settings.compatibility_key(), new_settings.compatibility_key())
    # the finetune rule: the domain may only have gained intents and entities, the policies only their epochs
    changes = ChangeSummary(
        changed_sections=(
            *((Section.DOMAIN_WITHOUT_RESPONSES,) if domain_changed else ()),
            *((Section.CONFIG_CORE_WITHOUT_EPOCHS,) if config_changes else ()),
        ),
        domain_not_growth=tuple(domain_changes),
    )
    reasons = list(finetune_blockers(changes, Part.CORE, details={
        Section.DOMAIN_WITHOUT_RESPONSES: domain_changes, Section.CONFIG_CORE_WITHOUT_EPOCHS: config_changes,
    }))
    if new_settings.ted is not None and old_settings.ted is not None:
        ted = _read_json(directory, layout.TED_FILE)
        if not ted.get("trained"):
            reasons.append("the previous model's TEDPolicy was never trained (it had no stories), nothing to finetune")
    if reasons:
        raise FinetuneRefused(reasons)
