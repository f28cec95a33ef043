"""Rasa's dialogue states for a project: run by bench/states_compat.py with *Rasa's* Python.

    /path/to/rasa-venv/bin/python bench/rasa_states.py PROJECT [TEST_STORIES]

Prints one JSON object:

* ``train``: every ``[states, action]`` example the ML policies (TEDPolicy, MemoizationPolicy)
  train on: the story trackers ``rasa train`` generates (no augmentation), their
  ``past_states`` and the actions of their ``applied_events``;
* ``test``: for every action of every test story, the states of the partial tracker
  ``rasa test`` predicts it from (the story's events so far), and the action.

States are Rasa's dicts (``prev_action``, ``user``, ``slots``, ``active_loop``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def main() -> None:
    # Rasa's own modules: only in Rasa's virtual env
    from rasa.shared.core.events import ActionExecuted  # type: ignore[import-not-found]
    from rasa.shared.core.generator import TrainingDataGenerator  # type: ignore[import-not-found]
    from rasa.shared.core.trackers import DialogueStateTracker  # type: ignore[import-not-found]
    from rasa.shared.importers.importer import TrainingDataImporter  # type: ignore[import-not-found]

    project = Path(sys.argv[1])
    importer = TrainingDataImporter.load_from_config(
        str(project / "config.yml"), str(project / "domain.yml"), [str(project / "data")]
    )
    domain = importer.get_domain()
    trackers = TrainingDataGenerator(
        importer.get_stories(), domain, augmentation_factor=0, use_story_concatenation=False
    ).generate()
    train: list[list[Any]] = []
    for tracker in trackers:
        if tracker.is_rule_tracker:
            continue
        states = tracker.past_states(domain)
        actions = [e.action_name or e.action_text for e in tracker.applied_events() if isinstance(e, ActionExecuted)]
        train.extend([_plain(states[: i + 1]), action] for i, action in enumerate(actions))
    test: list[list[Any]] = []
    if len(sys.argv) > 2:
        tests = TrainingDataImporter.load_from_config(
            str(project / "config.yml"), str(project / "domain.yml"), [sys.argv[2]]
        )
        for tracker in TrainingDataGenerator(
            tests.get_stories(), domain, augmentation_factor=0, use_story_concatenation=False
        ).generate():
            events = list(tracker.events)
            for i, event in enumerate(events):
                if i and isinstance(event, ActionExecuted):
                    partial = DialogueStateTracker.from_events(tracker.sender_id, events[:i], domain.slots)
                    test.append([_plain(partial.past_states(domain)), event.action_name or event.action_text])
    print(json.dumps({"train": train, "test": test}))


if __name__ == "__main__":
    main()
