"""Dialogue policy benchmark: the example assistant and a generated larger story set.

Usage (by hand; a few minutes on 2 cores)::

    python bench/core.py [--example examples/assistant] [--stories 600] [--test-stories 200]
                         [--epochs 50] [--skip-e2e] [--json out.json]

Parts:

* ``example``: the bundled-style assistant trained with its own config; story
  accuracy on its ``tests/`` stories with the stories' intents, and end to end
  with its NLU model (trained here) parsing the ``user:`` texts.
* ``generated``: a seeded customer-service assistant (FAQs answered by rules, an
  order-status flow whose branch depends on a bool slot, a booking form with
  chitchat inside, yes/no questions whose answer means something different in
  each flow, and zero to two FAQ interruptions before the user answers a
  question -- after two, the question has left a 5-turn window). Training stories are
  random chains of flows; test stories are new chains, each different from
  every training story, so the history of most turns was never seen. Three
  policy configs are compared: Rasa's default (Memoization + Rule + TED),
  Memoization + Rule alone, TED alone.
* ``finetune``: the default config trained on 90 % of the generated stories,
  then finetuned (epoch fraction 0.2) on all of them, against a full retrain.

Training runs in this process; ``train_seconds`` is ``summary["wall_seconds"]``
(expansion, contradiction check, memoization, TED), not the TensorFlow import,
which is reported once as ``tensorflow_import_seconds``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.data.model import (  # noqa: E402
    ActionStep,
    ActiveLoopStep,
    Component,
    Config,
    Domain,
    EntityDef,
    EntityValue,
    FormDef,
    IntentDef,
    SlotDef,
    SlotStep,
    Story,
    UserStep,
    freeze,
)

# ------------------------------------------------------------------ generated data

INTENTS = (
    "greet", "goodbye", "affirm", "deny", "thankyou", "bot_challenge", "ask_hours", "ask_location",
    "ask_price", "login", "check_order", "inform_order_id", "book_table", "inform", "cancel_booking",
    "request_human", "mood_bad", "mood_good",
)  # fmt: skip
RESPONSES = (
    "utter_greet", "utter_goodbye", "utter_welcome", "utter_iamabot", "utter_hours", "utter_location",
    "utter_price", "utter_logged_in", "utter_ask_order_id", "utter_order_status", "utter_anything_else",
    "utter_ask_people", "utter_ask_time", "utter_booking_confirmed", "utter_confirm_cancel", "utter_cancelled",
    "utter_not_cancelled", "utter_cheer_up", "utter_did_that_help", "utter_happy", "utter_handoff_ok",
)  # fmt: skip
ACTIONS = ("action_login", "action_check_order", "action_cancel_booking", "action_handoff")
FAQ = {"ask_hours": "utter_hours", "ask_location": "utter_location", "ask_price": "utter_price"}

Turn = list[Any]  # steps of the data model


def generated_domain() -> Domain:
    return Domain(
        intents=tuple(IntentDef(i) for i in INTENTS),
        entities=(EntityDef("order_id"), EntityDef("people"), EntityDef("time")),
        slots=(
            SlotDef("logged_in", "bool"),
            SlotDef("order_id", "text"),
            SlotDef("people", "text", influence_conversation=False),
            SlotDef("time", "text", influence_conversation=False),
        ),
        responses=freeze({name: [{"text": name}] for name in RESPONSES}),
        actions=ACTIONS,
        forms=(FormDef("booking_form", ("people", "time")),),
    )


def _user(intent: str, **entities: str) -> UserStep:
    return UserStep(intent, None, tuple(EntityValue(k, v) for k, v in entities.items()))


def _bot(*names: str) -> list[ActionStep]:
    return [ActionStep(n) for n in names]


def _faq(rng: random.Random) -> Turn:
    intent = rng.choice(sorted(FAQ))
    return [_user(intent), *_bot(FAQ[intent])]


def _interruptions(rng: random.Random) -> Turn:
    """None (60 %), one (30 %) or two (10 %) FAQs before the user answers the bot's question.

    After two, the question is out of a 5-state window: answers that depend on
    it (affirm/deny) become ambiguous for every policy with ``max_history: 5``.
    """
    draw = rng.random()
    count = 0 if draw < 0.6 else 1 if draw < 0.9 else 2
    steps: Turn = []
    for _ in range(count):
        steps += _faq(rng)
    return steps


def _order_flow(rng: random.Random, logged_in: bool) -> Turn:
    steps: Turn = [_user("check_order")]
    if logged_in:
        return steps + _bot("action_check_order", "utter_order_status", "utter_anything_else")
    steps += _bot("utter_ask_order_id") + _interruptions(rng)
    order = str(rng.randint(1000, 9999))
    steps += [_user("inform_order_id", order_id=order), SlotStep((("order_id", order),))]
    return steps + _bot("action_check_order", "utter_order_status", "utter_anything_else")


def _booking_flow(rng: random.Random) -> Turn:
    steps: Turn = [
        _user("book_table"),
        ActionStep("booking_form"),
        ActiveLoopStep("booking_form"),
        SlotStep((("requested_slot", "people"),)),
        _user("inform", people=str(rng.randint(2, 8))),
        ActionStep("booking_form"),
        SlotStep((("people", "4"), ("requested_slot", "time"))),
    ]
    if rng.random() < 0.25:  # chitchat inside the form: the bot answers, then the form asks again
        steps += [_user("bot_challenge"), *_bot("utter_iamabot", "booking_form")]
    steps += [
        _user("inform", time="7pm"),
        ActionStep("booking_form"),
        SlotStep((("time", "7pm"),)),
        ActiveLoopStep(None),
        SlotStep((("requested_slot", None),)),
        *_bot("utter_booking_confirmed", "utter_anything_else"),
    ]
    return steps


def _cancel_flow(rng: random.Random) -> Turn:
    steps: Turn = [_user("cancel_booking"), *_bot("utter_confirm_cancel"), *_interruptions(rng)]
    if rng.random() < 0.5:
        return steps + [_user("affirm"), *_bot("action_cancel_booking", "utter_cancelled", "utter_anything_else")]
    return steps + [_user("deny"), *_bot("utter_not_cancelled", "utter_anything_else")]


def _mood_flow(rng: random.Random) -> Turn:
    if rng.random() < 0.4:
        return [_user("mood_good"), *_bot("utter_happy")]
    steps: Turn = [_user("mood_bad"), *_bot("utter_cheer_up", "utter_did_that_help"), *_interruptions(rng)]
    if rng.random() < 0.5:
        return steps + [_user("affirm"), *_bot("utter_happy")]
    return steps + [_user("deny"), *_bot("utter_handoff_ok", "action_handoff")]


def generated_story(rng: random.Random, name: str) -> Story:
    """A random chain: optional greeting and login, 1-3 flows, an ending."""
    steps: Turn = []
    if rng.random() < 0.7:
        steps += [_user("greet"), *_bot("utter_greet")]
    logged_in = rng.random() < 0.3
    if logged_in:
        steps += [_user("login"), ActionStep("action_login"), SlotStep((("logged_in", True),)), *_bot("utter_logged_in")]
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("faq", "order", "order", "booking", "cancel", "mood"))
        if kind == "faq":
            steps += _faq(rng)
        elif kind == "order":
            steps += _order_flow(rng, logged_in)
        elif kind == "booking":
            steps += _booking_flow(rng)
        elif kind == "cancel":
            steps += _cancel_flow(rng)
        else:
            steps += _mood_flow(rng)
    ending = rng.choice(("deny", "goodbye", "thanks"))
    if ending == "deny" and isinstance(steps[-1], ActionStep) and steps[-1].name == "utter_anything_else":
        steps += [_user("deny"), *_bot("utter_goodbye")]
    elif ending == "thanks":
        steps += [_user("thankyou"), *_bot("utter_welcome")]
    else:
        steps += [_user("goodbye"), *_bot("utter_goodbye")]
    return Story(name, tuple(steps))


def generated_rules() -> list[Story]:
    rules = [Story(f"faq {intent}", (_user(intent), ActionStep(action)), kind="rule") for intent, action in FAQ.items()]
    rules += [
        Story("goodbye", (_user("goodbye"), ActionStep("utter_goodbye")), kind="rule"),
        Story("thanks", (_user("thankyou"), ActionStep("utter_welcome")), kind="rule"),
        Story("bot challenge", (_user("bot_challenge"), ActionStep("utter_iamabot")), kind="rule"),
        Story("human", (_user("request_human"), ActionStep("action_handoff")), kind="rule"),
        Story(
            "start booking",
            (_user("book_table"), ActionStep("booking_form"), ActiveLoopStep("booking_form")),
            kind="rule",
        ),
        Story(
            "submit booking",
            (
                ActionStep("booking_form"),
                ActiveLoopStep(None),
                SlotStep((("requested_slot", None),)),
                ActionStep("utter_booking_confirmed"),
            ),
            kind="rule",
            condition=(ActiveLoopStep("booking_form"),),
            wait_for_user_input=False,
        ),
    ]
    return rules


def _signature(story: Story) -> tuple[Any, ...]:
    return tuple((type(s).__name__, getattr(s, "intent", None), getattr(s, "name", None)) for s in story.steps)


def generated_data(num_stories: int, num_tests: int, seed: int) -> tuple[Domain, list[Story], list[Story], list[Story]]:
    """Domain, training stories, rules, and test stories unlike any training story."""
    rng = random.Random(seed)
    stories = [generated_story(rng, f"generated {i}") for i in range(num_stories)]
    seen = {_signature(s) for s in stories}
    tests: list[Story] = []
    test_rng = random.Random(seed + 1)
    attempts = 0
    while len(tests) < num_tests and attempts < num_tests * 50:
        attempts += 1
        story = generated_story(test_rng, f"test {len(tests)}")
        if _signature(story) not in seen:
            tests.append(Story(story.name, story.steps, kind="test"))
    return generated_domain(), stories, generated_rules(), tests


# -------------------------------------------------------------------- runs


def policies(kind: str, epochs: int) -> Config:
    ted = Component("TEDPolicy", freeze({"max_history": 5, "epochs": epochs}))
    chosen = {
        "memo+rule+ted": (Component("MemoizationPolicy", freeze({"max_history": 5})), Component("RulePolicy"), ted),
        "memo+rule": (Component("MemoizationPolicy", freeze({"max_history": 5})), Component("RulePolicy")),
        "ted": (ted,),
    }[kind]
    return Config(policies=chosen)


@dataclass
class Row:
    part: str
    setup: str
    stories: int
    tests: int
    epochs: int
    train_seconds: float
    story_accuracy: float
    action_accuracy: float
    extra: dict[str, Any]


def run(part: str, setup: str, domain: Domain, train: Sequence[Story], tests: Sequence[Story], config: Config, *,
        parse: Any = None, finetune_from: Path | None = None, fraction: float = 0.2, seed: int = 42) -> tuple[Row, Any]:
    from pipeline.training.core import evaluate_stories, finetune_core, train_core

    if finetune_from is None:
        model = train_core(domain, train, config, seed=seed)
    else:
        model = finetune_core(finetune_from, domain, train, config, epoch_fraction=fraction, seed=seed)
    started = time.perf_counter()
    evaluation = evaluate_stories(model, tests, parse=parse)
    eval_seconds = time.perf_counter() - started
    row = Row(
        part, setup, sum(1 for s in train if not s.is_rule), evaluation.num_stories, model.summary["epochs_run"],
        model.summary["wall_seconds"], evaluation.accuracy, evaluation.action_report["accuracy"],
        {"eval_seconds": round(eval_seconds, 2), "rules": sum(1 for s in train if s.is_rule),
         "ted": model.summary["ted"], "warnings": model.summary["warnings"]},
    )
    print(f"  {part:9} {setup:24} train {row.train_seconds:7.1f}s  stories {row.story_accuracy:.3f}  "
          f"actions {row.action_accuracy:.3f}  ({row.tests} test stories, eval {eval_seconds:.1f}s)", flush=True)
    return row, model


def example_rows(path: Path, *, e2e: bool, seed: int) -> list[Row]:
    from pipeline.data.loader import DirectorySource, load_project

    project, _ = load_project(DirectorySource(path))
    rows = []
    row, _ = run("example", "own config", project.domain, project.stories, project.test_stories, project.config, seed=seed)
    rows.append(row)
    if e2e and project.nlu.examples:
        from pipeline.training.nlu import train_nlu

        started = time.perf_counter()
        nlu = train_nlu(project.nlu, project.config, seed=seed)
        nlu_seconds = time.perf_counter() - started
        row, _ = run("example", "own config, end to end", project.domain, project.stories, project.test_stories,
                     project.config, parse=nlu.parse, seed=seed)
        row.extra["nlu_train_seconds"] = round(nlu_seconds, 1)
        rows.append(row)
    return rows


def generated_rows(num_stories: int, num_tests: int, epochs: int, seed: int) -> list[Row]:
    domain, stories, rules, tests = generated_data(num_stories, num_tests, seed)
    rows = []
    for setup in ("memo+rule+ted", "memo+rule", "ted"):
        data = [*stories, *rules] if "rule" in setup else stories
        row, _ = run("generated", setup, domain, data, tests, policies(setup, epochs), seed=seed)
        rows.append(row)
    with tempfile.TemporaryDirectory() as tmp:
        base = stories[: int(len(stories) * 0.9)]
        row, model = run("finetune", "base: 90% of stories", domain, [*base, *rules], tests,
                         policies("memo+rule+ted", epochs), seed=seed)
        rows.append(row)
        model.save(Path(tmp) / "base")
        row, _ = run("finetune", "finetune 0.2 on 100%", domain, [*stories, *rules], tests,
                     policies("memo+rule+ted", epochs), finetune_from=Path(tmp) / "base", seed=seed)
        rows.append(row)
    row, _ = run("finetune", "full retrain on 100%", domain, [*stories, *rules], tests,
                 policies("memo+rule+ted", epochs), seed=seed)
    rows.append(row)
    return rows


def render_markdown(rows: Sequence[Row], meta: dict[str, Any]) -> str:
    lines = [
        "| part | setup | train stories | test stories | TED epochs | train s | story accuracy | action accuracy |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.part} | {r.setup} | {r.stories} | {r.tests} | {r.epochs} | {r.train_seconds:.1f} | "
            f"{r.story_accuracy:.3f} | {r.action_accuracy:.3f} |"
        )
    lines.append("")
    lines.append(f"Machine: {meta['machine']}; TensorFlow import {meta['tensorflow_import_seconds']:.1f} s (not in train s).")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--example", type=Path, default=ROOT / "examples" / "assistant")
    parser.add_argument("--stories", type=int, default=600, help="generated training stories")
    parser.add_argument("--test-stories", type=int, default=200, help="generated test stories (all unseen)")
    parser.add_argument("--epochs", type=int, default=50, help="TEDPolicy epochs for the generated set")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-e2e", action="store_true", help="do not train the example's NLU model")
    parser.add_argument("--skip-example", action="store_true")
    parser.add_argument("--skip-generated", action="store_true")
    parser.add_argument("--json", type=Path, help="write rows and metadata as JSON here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from pipeline.training.runtime import configure_tensorflow

    configure_tensorflow(seed=args.seed)
    meta = {
        "machine": f"{platform.machine()}, {platform.python_version()}, {__import__('os').cpu_count()} CPU(s)",
        "tensorflow_import_seconds": time.perf_counter() - started,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    rows: list[Row] = []
    if not args.skip_example:
        rows += example_rows(args.example, e2e=not args.skip_e2e, seed=args.seed)
    if not args.skip_generated:
        rows += generated_rows(args.stories, args.test_stories, args.epochs, args.seed)
    meta["total_seconds"] = time.perf_counter() - started
    print()
    print(render_markdown(rows, meta))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": [r.__dict__ for r in rows]}, indent=2, default=str))


if __name__ == "__main__":
    main()
