"""The dialogue policy: Rasa's RulePolicy, MemoizationPolicy and TEDPolicy.

::

    train_core(domain, stories, config)                      -> CoreModel
    finetune_core(previous_dir, domain, stories, config, epoch_fraction=0.2)
                                                             -> CoreModel   (FinetuneRefused)
    check_finetune_compatible(previous_dir, domain, config)  -> None        (FinetuneRefused)
    CoreModel.predict_next_action(TrackerState)              -> Prediction
    TrackerState().with_user("greet").with_action("utter_greet").with_parse(nlu.parse(text))
    CoreModel.save(dir) / CoreModel.load(dir)
    evaluate_stories(model, test_stories, parse=...)         -> StoryEvaluation

Modules: :mod:`.tracker` (events, TrackerState), :mod:`.stories` (checkpoint
and ``or`` expansion), :mod:`.states` (dialogue states, vocabulary, features),
:mod:`.settings` (policy options), :mod:`.rules`, :mod:`.memoization`,
:mod:`.ted` (the policies), :mod:`.ensemble` (picking a prediction),
:mod:`.model` (CoreModel, save/load), :mod:`.layout` (saved files),
:mod:`.compatibility` (domain fingerprint, finetune rule), :mod:`.training`,
:mod:`.evaluation`. Only :func:`.ted.train_weights` imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compatibility import check_finetune_compatible, compute_domain_fingerprint, compute_domain_sections
    from .ensemble import Prediction
    from .evaluation import FAILED_STORIES_FILE, FailedStory, Mistake, StoryEvaluation, StoryResult, evaluate_stories
    from .model import CoreModel
    from .settings import CoreSettings, resolve_settings
    from .tracker import ACTION_LISTEN, ActionExecuted, ActiveLoop, Event, SlotSet, TrackerState, UserUttered
    from .training import finetune_core, train_core

#: Where each public name lives. Loaded on first use (PEP 562), so that config validation can
#: import :mod:`.settings` with the core install, which has no NumPy.
_EXPORTS = {
    "check_finetune_compatible": "compatibility", "compute_domain_fingerprint": "compatibility",
    "compute_domain_sections": "compatibility", "Prediction": "ensemble",
    "FAILED_STORIES_FILE": "evaluation", "FailedStory": "evaluation", "Mistake": "evaluation",
    "StoryEvaluation": "evaluation", "StoryResult": "evaluation", "evaluate_stories": "evaluation",
    "CoreModel": "model", "CoreSettings": "settings", "resolve_settings": "settings",
    "ACTION_LISTEN": "tracker", "ActionExecuted": "tracker", "ActiveLoop": "tracker", "Event": "tracker",
    "SlotSet": "tracker", "TrackerState": "tracker", "UserUttered": "tracker",
    "finetune_core": "training", "train_core": "training",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

__all__ = [
    "train_core",
    "finetune_core",
    "check_finetune_compatible",
    "CoreModel",
    "Prediction",
    "TrackerState",
    "UserUttered",
    "ActionExecuted",
    "SlotSet",
    "ActiveLoop",
    "Event",
    "ACTION_LISTEN",
    "evaluate_stories",
    "StoryEvaluation",
    "StoryResult",
    "FailedStory",
    "Mistake",
    "FAILED_STORIES_FILE",
    "CoreSettings",
    "resolve_settings",
    "compute_domain_sections",
    "compute_domain_fingerprint",
]
