"""Can a saved NLU model be finetuned on new data and config? Reads JSON only (no TensorFlow).

Added intents and entity types are allowed (the finetune grows the label space);
removed or renamed labels, role/group changes, a config change beyond epochs,
new or removed ResponseSelectors and a shrinking feature space are refused, each
with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pipeline.data.model import Config, NluData
from pipeline.errors import FinetuneRefused, ModelError

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


def _label_reasons(kind: str, old: tuple[str, ...], new: tuple[str, ...], *, may_grow: bool = False) -> list[str]:
    """Why the label set ``old`` cannot become ``new``; with ``may_grow``, additions alone are fine."""
    reasons = []
    added, removed = set(new) - set(old), set(old) - set(new)
    if removed:
        # a rename is an addition plus a removal: both are named so the user sees the pair
        if added:
            reasons.append(f"{kind} added: {_names(added)}")
        reasons.append(f"{kind} removed: {_names(removed)}")
    elif added and not may_grow:
        reasons.append(f"{kind} added: {_names(added)}")
    return reasons


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
    reasons: list[str] = []
    before, after = _flatten(old.compatibility_key()), _flatten(new.compatibility_key())
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            reasons.append(
                f"config `{key}` changed from {before.get(key)!r} to {after.get(key)!r} (only epochs may change)"
            )
    labels = LabelMaps.from_data(data, bilou=new.diet.BILOU_flag)
    # intents and entity types may be added (the finetune grows the label space, see .growth);
    # removed or renamed ones, and any change of roles or groups, need a full training
    if new.diet.intent_classification:
        reasons += _label_reasons("intents", saved_labels.intents, labels.intents, may_grow=True)
    if new.diet.entity_recognition:
        reasons += _label_reasons("entities", saved_labels.entities, labels.entities, may_grow=True)
        reasons += _label_reasons("entity roles", saved_labels.roles, labels.roles)
        reasons += _label_reasons("entity groups", saved_labels.groups, labels.groups)
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
    """Raise FinetuneRefused listing every reason the previous model cannot be finetuned."""
    reasons = finetune_reasons(Path(previous_dir), data, config)
    if reasons:
        raise FinetuneRefused(reasons)
