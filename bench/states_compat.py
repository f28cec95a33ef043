"""Dialogue states of deltatrain against Rasa 3.6's, example by example, on Rasa's example bots.

    python bench/states_compat.py --bots ../shared/rasa-examples --rasa-venv ../rasa-venv

For each bot: the ``[states, action]`` examples the ML policies train on (story
trackers, Rasa's ``past_states`` and ``applied_events``; deltatrain's
:func:`~pipeline.training.core.states.replay`), and for each action of the bot's
test stories the states it is predicted from (Rasa's partial tracker in
``rasa test``; deltatrain's :func:`~pipeline.training.core.states.replay_turn_by_turn`).
Rasa's side runs in Rasa's own Python (``bench/rasa_states.py``). Compared as sets of
canonical JSON, after two normalisations that are notation, not behaviour: Rasa's
state before the conversation's first ``action_listen`` (empty, or the slots' initial
values) is left out (deltatrain starts listening, in training and prediction alike), and
a user turn is its intent (Rasa drops the text when there is one); a text-only turn is
``{"text": ...}`` on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.data.loader import DirectorySource, ProjectPaths, load_project  # noqa: E402
from pipeline.training.core.states import DomainSpec, State, replay, replay_turn_by_turn  # noqa: E402
from pipeline.training.core.stories import expand_stories, resolve_bot_texts  # noqa: E402
from pipeline.training.core.tracker import UserUttered  # noqa: E402


def _rasa_state(state: dict[str, Any]) -> dict[str, Any]:
    user = dict(state.get("user") or {})
    if user.get("intent"):
        user.pop("text", None)
    out = {k: v for k, v in state.items() if k != "user"}
    if user:
        out["user"] = user
    return out


def _rasa_examples(examples: list[list[Any]]) -> set[str]:
    result = set()
    for states, action in examples:
        states = [_rasa_state(s) for s in states]
        if states and "prev_action" not in states[0]:
            states = states[1:]  # the state before the first action_listen ({} or initial slot values)
        if not states:
            continue  # the first action_listen, before anything happened
        result.add(json.dumps([states, action], sort_keys=True))
    return result


def _state(state: State, texts: dict[int, str], key: int) -> dict[str, Any]:
    out: dict[str, Any] = {"prev_action": {"action_name": state.prev_action}}
    if state.intent:
        out["user"] = {"intent": state.intent}
        if state.entities:
            out["user"]["entities"] = list(state.entities)
    elif texts.get(key):
        out["user"] = {"text": texts[key]}
    if state.slots:
        out["slots"] = {name: list(features) for name, features in state.slots}
    if state.active_loop:
        out["active_loop"] = {"name": state.active_loop}
    return out


def _deltatrain_examples(project_dir: Path, tests: Path | None) -> tuple[set[str], set[str]]:
    paths = ProjectPaths(tests=(str(tests.relative_to(project_dir)),) if tests else (), ignore_unknown_components=True)
    project, _ = load_project(DirectorySource(project_dir), paths)
    spec = DomainSpec.from_domain(project.domain)
    stories, _ = resolve_bot_texts([s for s in project.stories if not s.is_rule], project.domain)
    train: set[str] = set()
    for trajectory in expand_stories(stories).trajectories:
        played = replay(trajectory.events, spec)
        train.update(_encode(played.history(k), played.actions[k], trajectory.events) for k in range(len(played.actions)))
    test: set[str] = set()
    if tests is not None:
        test_stories = [replace(s, kind="test") for s in project.test_stories if not s.is_rule]
        test_stories, _ = resolve_bot_texts(test_stories, project.domain)
        for trajectory in expand_stories(test_stories).trajectories:
            played = replay_turn_by_turn(trajectory.events, spec)
            test.update(_encode(played.history(k), played.actions[k], trajectory.events) for k in range(len(played.actions)))
    return train, test


def _encode(history: tuple[State, ...], action: str, events: Any) -> str:
    # a text-only user turn: its text, where the state has no intent (one text per story here)
    texts = {0: next((e.text.strip() for e in events if isinstance(e, UserUttered) and e.text and not e.intent), "")}
    states = [_state(s, texts if not s.intent and s.prev_action else {}, 0) for s in history]
    return json.dumps([states, action], sort_keys=True)


def compare(bot: Path, venv: Path) -> dict[str, Any]:
    """Rasa's and deltatrain's examples for one bot, and the ones only one side has."""
    tests = next((p for p in (bot / "tests", bot / "stories" / "test_stories.yml") if p.exists()), None)
    cmd = [str(venv / "bin" / "python"), str(ROOT / "bench" / "rasa_states.py"), str(bot)] + ([str(tests)] if tests else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode != 0:
        return {"bot": bot.name, "error": proc.stderr.strip().splitlines()[-1:]}
    rasa = json.loads(proc.stdout.strip().splitlines()[-1])
    rasa_train, rasa_test = _rasa_examples(rasa["train"]), _rasa_examples(rasa["test"])
    try:
        ours_train, ours_test = _deltatrain_examples(bot, tests)
    except Exception as exc:  # a project deltatrain refuses (the compatibility bench judges those)
        return {"bot": bot.name, "error": [f"deltatrain: {type(exc).__name__}: {str(exc).splitlines()[0]}"]}
    return {
        "bot": bot.name,
        "train": [len(rasa_train), len(ours_train), sorted(rasa_train - ours_train), sorted(ours_train - rasa_train)],
        "test": [len(rasa_test), len(ours_test), sorted(rasa_test - ours_test), sorted(ours_test - rasa_test)],
    }


def main() -> None:
    """Compare every bot; print a markdown table (and the differing examples with --show)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=Path, required=True)
    parser.add_argument("--rasa-venv", type=Path, default=Path("/work/rasa-venv"))
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--show", action="store_true", help="print the examples only one side has")
    args = parser.parse_args()
    names = args.only or sorted(p.name for p in args.bots.iterdir() if (p / "config.yml").exists())
    print("| bot | training examples (Rasa / deltatrain / only Rasa / only deltatrain) | test predictions (same) |")
    print("|---|---|---|")
    for name in names:
        row = compare(args.bots / name, args.rasa_venv)
        if "error" in row:
            print(f"| {name} | not compared: {row['error']} | |")
            continue
        cells = [f"{a} / {b} / {len(c)} / {len(d)}" for a, b, c, d in (row["train"], row["test"])]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
        if args.show:
            for part in ("train", "test"):
                for side, examples in (("only Rasa", row[part][2]), ("only deltatrain", row[part][3])):
                    for example in examples:
                        print(f"    {part} {side}: {example}", file=sys.stderr)


if __name__ == "__main__":
    main()
