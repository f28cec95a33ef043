"""Can a saved NLU model be finetuned on new data and config? Reads JSON only (no TensorFlow).

A safety net: the decision (:mod:`pipeline.decision`) already chose to finetune from the
fingerprints; this checks the saved model itself before its weights are touched. The
finetune rule is the decision's, :func:`pipeline.decision.finetune_blockers`, applied to
the saved labels and settings: added intents and entity types are allowed (the finetune
grows the label space); removed or renamed labels, role/group changes and a config change
beyond epochs are refused. What only the saved model can tell is checked here too: its
format, new or removed ResponseSelectors and a shrinking feature space. Each refusal
comes with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pipeline.data.model import Config, NluData
from pipeline.decision import Part, finetune_blockers
from pipeline.errors import FinetuneRefused, ModelError
from pipeline.fingerprint import ChangeSummary, Section

from . import layout
from .features import pattern_keys
from .labels import LabelMaps
from .model import format_problems, read_json
from .selector import SelectorSettings, resolve_selectors, selector_examples
from .settings import NluSettings, resolve_settings


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _names(values: Any) -> str:
    return ", ".join(f"`{v}`" for v in sorted(values))


def _label_reasons(kind: str, old: tuple[str, ...], new: tuple[str, ...]) -> list[str]:
    """Why the retrieval keys ``old`` of a ResponseSelector cannot become ``new``."""
    reasons = []
    added, removed = set(new) - set(old), set(old) - set(new)
    if added:
        reasons.append(f"{kind} added: {_names(added)}")
    if removed:
        reasons.append(f"{kind} removed: {_names(removed)}")
    return reasons


def _diff(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(sorted(set(new) - set(old))), tuple(sorted(set(old) - set(new)))


def _changes(old: LabelMaps, new: LabelMaps, *, intents: bool, entities: bool, config_changed: bool) -> ChangeSummary:
    """The saved model's labels against the new data's as a change summary (only the labels it predicts)."""
    intents_added, intents_removed = _diff(old.intents, new.intents) if intents else ((), ())
    entities_added, entities_removed = _diff(old.entities, new.entities) if entities else ((), ())
    roles_added, roles_removed = _diff(old.roles, new.roles) if entities else ((), ())
    groups_added, groups_removed = _diff(old.groups, new.groups) if entities else ((), ())
    return ChangeSummary(
        changed_sections=(Section.CONFIG_NLU_WITHOUT_EPOCHS,) if config_changed else (),
        intents_added=intents_added, intents_removed=intents_removed,
        entities_added=entities_added, entities_removed=entities_removed,
        roles_added=roles_added, roles_removed=roles_removed,
        groups_added=groups_added, groups_removed=groups_removed,
    )


def finetune_reasons(previous_dir: Path, data: NluData, config: Config) -> list[str]:
    """Every reason the model in ``previous_dir`` cannot be finetuned (empty: it can)."""
    try:
        problems = format_problems(read_json(previous_dir, layout.FORMAT_FILE))
        if problems:
            return problems
        saved_config = read_json(previous_dir, layout.CONFIG_FILE)
        saved_labels = LabelMaps.from_config(read_json(previous_dir, layout.LABELS_FILE)["labels"])
        saved_vocab = read_json(previous_dir, layout.VOCABULARIES_FILE)
        old = NluSettings.from_config(saved_config["settings"])
    except ModelError as exc:
        return [exc.message]
    except (KeyError, TypeError, ValueError) as exc:
        return [f"the previous NLU model's files are unreadable ({exc!r})"]
    new = resolve_settings(config)
    before, after = _flatten(old.compatibility_key()), _flatten(new.compatibility_key())
    config_changes = [
        f"config `{key}` changed from {before.get(key)!r} to {after.get(key)!r} (only epochs may change)"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
    labels = LabelMaps.from_data(data, bilou=new.diet.BILOU_flag)
    # the finetune rule: intents and entity types may be added (the finetune grows the label space, see
    # .growth); removed or renamed ones, any change of roles or groups and of the config need a full training
    changes = _changes(saved_labels, labels, intents=new.diet.intent_classification,
                       entities=new.diet.entity_recognition, config_changed=bool(config_changes))
    reasons = list(finetune_blockers(changes, Part.NLU, details={Section.CONFIG_NLU_WITHOUT_EPOCHS: config_changes}))
    reasons += _selector_reasons(previous_dir, data, config)
    if not reasons:  # same featurizers: compare the pattern feature spaces
        for spec, keys in zip(new.featurizers, saved_vocab.get("vocabularies", [])):
            if spec.kind != "regex":
                continue
            now = set(pattern_keys(spec, data.regexes, data.lookups))
            gone = [k for k in keys if k not in now]
            if gone:
                reasons.append(
                    f"{len(gone)} regex/lookup pattern(s) removed ({_names(gone[:5])}): the RegexFeaturizer"
                    f" feature space would shrink from {len(keys)} to {len(keys) - len(gone)}"
                )
    return reasons


def _selector_reasons(previous_dir: Path, data: NluData, config: Config) -> list[str]:
    """Why the previous model's ResponseSelectors cannot be finetuned into the configured ones."""
    saved: dict[str, tuple[SelectorSettings, tuple[str, ...]]] = {}
    if (Path(previous_dir) / layout.SELECTORS_FILE).exists():
        try:
            for item in read_json(previous_dir, layout.SELECTORS_FILE)["selectors"]:
                settings = SelectorSettings.from_config(item["settings"])
                saved[settings.key] = (settings, tuple(item["keys"]))
        except (ModelError, KeyError, TypeError, ValueError) as exc:
            return [f"the previous model's ResponseSelectors are unreadable ({exc!r})"]
    reasons: list[str] = []
    wanted: set[str] = set()
    for selector in resolve_selectors(config):
        keys = tuple(sorted({data.examples[i].full_intent for i in selector_examples(data.examples, selector)}))
        if not keys:
            continue
        wanted.add(selector.key)
        if selector.key not in saved:
            reasons.append(f"ResponseSelector `{selector.key}` added (retrieval intents {_names(keys)})")
            continue
        old_settings, old_keys = saved[selector.key]
        reasons += _label_reasons(f"retrieval intents of ResponseSelector `{selector.key}`", old_keys, keys)
        if old_settings.compatibility_key() != selector.compatibility_key():
            reasons.append(f"config of ResponseSelector `{selector.key}` changed (only epochs may change)")
    reasons += [f"ResponseSelector `{key}` removed" for key in sorted(set(saved) - wanted)]
    return reasons


def check_finetune_compatible(previous_dir: Path, data: NluData, config: Config) -> None:
    """Raise FinetuneRefused listing every reason the previous model cannot be finetuned (a safety net:
    the decision judged from fingerprints; this reads the saved model)."""
    reasons = finetune_reasons(Path(previous_dir), data, config)
    if reasons:
        raise FinetuneRefused(reasons)
