"""Train or finetune the dialogue model: the one place that sequences the steps.

::

    config.policies --resolve_settings--> CoreSettings
    domain          --DomainSpec.from_domain--> vocabulary
    stories + rules --expand_stories--> conversations --check_story_data--> (TrainingError)
    rules           --RulePolicy.train--> lookup (TrainingError on contradictions)
    stories         --MemoizationPolicy.train / TEDPolicy.train--> CoreModel

Rules are checked before TEDPolicy trains, so a contradiction fails in
seconds. ML policies (memoization, TED) learn from stories only; RulePolicy
from rules, as in Rasa.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from pipeline.data.model import Config, Domain, Story
from pipeline.decision import check_epoch_fraction
from pipeline.rule_check import analyze_rules, rule_check_options
from pipeline.training.runtime import Progress

from .compatibility import check_finetune_compatible, compute_domain_fingerprint, compute_domain_sections
from .growth import grow_input_weights
from .memoization import MemoizationPolicy
from .model import CoreModel, Policy
from .rules import RulePolicy
from .settings import MemoSettings, RuleSettings, TedSettings, resolve_settings
from .states import DomainSpec, replay
from .stories import check_story_data, expand_stories, label_text_turns, resolve_bot_texts, text_only_turns
from .ted import TEDPolicy

__all__ = ["train_core", "finetune_core"]


def train_core(
    domain: Domain,
    stories: Sequence[Story],
    config: Config,
    *,
    progress: Progress | None = None,
    seed: int = 42,
    nlu_dir: Path | None = None,
) -> CoreModel:
    """Train every configured policy on ``stories`` (stories and rules, by ``Story.kind``).

    A user turn written as text only gets the intent the NLU model saved in ``nlu_dir``
    predicts for it, with a warning. Raises TrainingError naming the story and step for
    contradicting rules or names missing from the domain, ConfigError for invalid policy options.
    """
    return _train(domain, stories, config, progress=progress, seed=seed, nlu_dir=nlu_dir)


def finetune_core(
    previous_dir: Path,
    domain: Domain,
    stories: Sequence[Story],
    config: Config,
    *,
    epoch_fraction: float,
    progress: Progress | None = None,
    seed: int = 42,
    nlu_dir: Path | None = None,
) -> CoreModel:
    """Continue training the saved model's TEDPolicy on ``stories``; rebuild rules and memoization.

    TEDPolicy trains ``ceil(epochs * epoch_fraction)`` epochs, where ``epochs``
    is TEDPolicy's ``epochs`` in the new config when given there, else the
    previous model's. Intents and entities added to the domain grow TEDPolicy's
    input features (:mod:`.growth`). Raises FinetuneRefused (with every reason)
    when the domain changed otherwise, the policies or TEDPolicy's network options changed.
    """
    check_epoch_fraction(epoch_fraction, name="epoch_fraction")
    check_finetune_compatible(previous_dir, domain, config)
    previous = CoreModel.load(previous_dir)
    return _train(
        domain,
        stories,
        config,
        progress=progress,
        seed=seed,
        previous=previous,
        epoch_fraction=float(epoch_fraction),
        nlu_dir=nlu_dir,
    )


def _explicit_ted_epochs(config: Config) -> int | None:
    for component in config.policies:
        if component.name == "TEDPolicy" and "epochs" in component.options and not config.policies_is_default:
            return int(component.options["epochs"])
    return None


def _label_text_turns(stories: list[Story], nlu_dir: Path | None) -> tuple[list[Story], list[str]]:
    """Label text-only user turns with the intents the NLU model in ``nlu_dir`` predicts."""
    texts = text_only_turns(stories)
    if not texts or nlu_dir is None or not Path(nlu_dir).is_dir():
        return stories, []
    from pipeline.training.nlu.model import NluModel

    parsed = NluModel.load(Path(nlu_dir)).parse_batch(texts)
    rankings = {
        text: [item["name"] for item in result.get("intent_ranking") or [] if item.get("name")]
        or [name for name in [(result.get("intent") or {}).get("name")] if name]
        for text, result in zip(texts, parsed)
    }
    return label_text_turns(stories, rankings)


def _train(
    domain: Domain,
    stories: Sequence[Story],
    config: Config,
    *,
    progress: Progress | None,
    seed: int,
    previous: CoreModel | None = None,
    epoch_fraction: float | None = None,
    nlu_dir: Path | None = None,
) -> CoreModel:
    started = time.perf_counter()
    settings = resolve_settings(config)
    spec = DomainSpec.from_domain(domain)
    training = [replace(s, kind="story") if s.kind == "test" else s for s in stories]
    training, label_warnings = _label_text_turns(training, nlu_dir)
    training, bot_warnings = resolve_bot_texts(training, domain)
    label_warnings += bot_warnings
    for warning in label_warnings:
        if progress is not None:
            progress({"model": "core", "phase": "warning", "message": warning})
    graph = expand_stories(training)
    check_story_data(graph.trajectories, domain, spec)
    rules = [t for t in graph.trajectories if t.is_rule]
    plain = [t for t in graph.trajectories if not t.is_rule]
    replays = [replay(t.events, spec) for t in plain]

    built: dict[str, Policy] = {}
    ted_info: dict[str, Any] = {}
    epochs_run = 0
    for policy_settings in sorted(settings.policies, key=lambda p: p.name != "RulePolicy"):
        if isinstance(policy_settings, RuleSettings):
            analysis = analyze_rules(domain, training, rule_check_options(config))
            built[policy_settings.name] = RulePolicy.train(
                policy_settings, rules, spec, analysis.problems, replays, analysis.dropped_keys
            )
        elif isinstance(policy_settings, MemoSettings):
            built[policy_settings.name] = MemoizationPolicy.train(policy_settings, replays)
        elif isinstance(policy_settings, TedSettings):
            previous_ted = previous.ted_policy if previous is not None else None
            if (previous is not None and previous_ted is not None and previous_ted.weights is not None
                    and previous.spec != spec):
                # the domain gained intents/entities (checked by check_finetune_compatible): grow the inputs
                grown = grow_input_weights(previous_ted.weights, previous.spec, spec)
                previous_ted = TEDPolicy(previous_ted.settings, previous_ted.max_history, grown)
                ted_info["input_features_added"] = spec.feature_size - previous.spec.feature_size
            epochs = policy_settings.epochs
            if previous is not None and epoch_fraction is not None:
                base = _explicit_ted_epochs(config)
                if base is None:
                    base = previous.settings.ted.epochs if previous.settings.ted is not None else policy_settings.epochs
                epochs = math.ceil(base * epoch_fraction)
                ted_info["epochs_configured"] = base
            ted, history = TEDPolicy.train(
                policy_settings,
                [t.events for t in plain],
                spec,
                seed=seed,
                epochs=epochs,
                previous=previous_ted,
                progress=progress,
                phase="finetune" if previous is not None else "train",
            )
            built[policy_settings.name] = ted
            epochs_run = len(history)
            ted_info.update(
                max_history=ted.max_history,
                trained=ted.weights is not None,
                story_actions=sum(len(r.actions) for r in replays),
                final_loss=history[-1]["loss"] if history else None,
                final_accuracy=history[-1]["accuracy"] if history else None,
            )

    warnings = label_warnings + list(graph.warnings)
    ted_settings = settings.ted
    if ted_settings is not None and not plain:
        warnings.append("TEDPolicy was not trained: there are no stories (rules alone do not train it)")
    if ted_settings is not None and plain and epochs_run == 0 and not ted_info.get("trained"):
        warnings.append("TEDPolicy was not trained: its epochs are 0; it predicts nothing")
    if ted_settings is not None and previous is None and ted_settings.epochs == 1 and plain:
        warnings.append("TEDPolicy trained for 1 epoch (Rasa's default); set 'epochs' in config.yml, e.g. 100")
    policies = [built[p.name] for p in settings.policies]
    sections = compute_domain_sections(domain)
    rule_policy = built.get("RulePolicy")
    memo_policy = built.get("MemoizationPolicy")
    summary = {
        "mode": "finetune" if previous is not None else "full",
        "policies": [p.name for p in settings.policies],
        "epochs_run": epochs_run,
        "num_stories": sum(1 for s in training if not s.is_rule),
        "num_rules": sum(1 for s in training if s.is_rule),
        "num_trackers": len(graph.trajectories),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "seed": seed,
        "ted": ted_info,
        "rule_entries": len(rule_policy.entries) if isinstance(rule_policy, RulePolicy) else 0,
        "memoized_states": len(memo_policy.lookup) if isinstance(memo_policy, MemoizationPolicy) else 0,
        "ignored_options": list(settings.ignored),
        "warnings": warnings,
    }
    if epoch_fraction is not None:
        summary["epoch_fraction"] = epoch_fraction
    return CoreModel(
        spec,
        settings,
        policies,
        {"sections": sections, "fingerprint": compute_domain_fingerprint(sections)},
        summary,
    )
