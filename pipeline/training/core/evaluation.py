"""Story evaluation: replay test stories through the model, as ``rasa test core`` does.

For every test story (``or`` steps and checkpoints expanded), every bot action
-- including the ``action_listen`` before each user turn and at the end -- is
predicted from the conversation so far and compared with the story; the story
then goes on with the story's action, right or wrong. When the form happy path
predicts the active form but the story runs something else, the form counts as
rejected and the prediction is made again (Rasa's ``emulate_loop_rejection``).

With ``parse``, each user turn that has a text goes through the NLU model; a
predicted intent other than the story's, or other entities (type and value),
make the story fail, and the conversation goes on with the story's own intent
and entities, as in Rasa's end-to-end test (``WronglyClassifiedUserUtterance``).
A turn written as text only goes on with what the NLU model predicted. Each
action is predicted from the conversation so far (Rasa's partial tracker): a
form's happy-path re-run is predicted with the user turn it handles still in
the history (:func:`~.states.replay_turn_by_turn`).
When the story names a full retrieval action (``utter_faq/ask_price``) and the
dialogue model predicts the retrieval action (``utter_faq``), the prediction is
the response the ResponseSelector chose for the latest user message, as in
Rasa's ``_get_predicted_action_name``.

Outputs, in Rasa's shapes: ``action_report`` as ``story_report.json``
(per-action precision/recall/F1/support, accuracy, macro/weighted/micro
averages, ``conversation_accuracy``), failed stories as
``failed_test_stories.yml`` with ``# predicted: X`` on the wrong lines, and a
JUnit XML with one test case per story.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from pipeline.data.model import EntityValue, Location, Story
from pipeline.metrics import classification_report

from .model import CoreModel
from .ensemble import Prediction
from .states import Replay, State, base_intent, replay_predictions, replay_turn_by_turn, retrieval_action
from .stories import Trajectory, expand_stories
from .tracker import ACTION_LISTEN, ActionExecuted, ActiveLoop, Event, SlotSet, UserUttered

__all__ = ["Mistake", "StoryResult", "FailedStory", "StoryEvaluation", "evaluate_stories", "FAILED_STORIES_FILE"]

#: Rasa's name for the failed stories file.
FAILED_STORIES_FILE = "failed_test_stories.yml"
#: Training data format version written at the top of the failed stories file.
YAML_VERSION = "3.1"

Parse = Callable[[str], Mapping[str, Any]]


@dataclass(frozen=True)
class Mistake:
    """One wrong prediction in a story: of an ``action`` or of a user turn's ``intent``."""

    kind: str  # "action" | "intent" | "entities" (of a user turn whose intent was right)
    event_index: int  # position in FailedStory.events
    expected: str
    predicted: str
    policy: str | None = None
    confidence: float | None = None
    text: str | None = None
    predicted_entities: tuple[EntityValue, ...] = ()
    location: Location | None = field(default=None, compare=False)

    def describe(self) -> str:
        where = f"{self.location}: " if self.location else ""
        if self.kind == "intent":
            return f"{where}intent '{self.expected}' expected for {self.text!r}, NLU predicted '{self.predicted}'"
        if self.kind == "entities":
            return f"{where}entities {self.expected} expected for {self.text!r}, NLU found {self.predicted}"
        by = f" by {self.policy}" if self.policy else ""
        confidence = f" ({self.confidence:.2f})" if self.confidence is not None else ""
        return f"{where}action '{self.expected}' expected, predicted '{self.predicted}'{by}{confidence}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "expected": self.expected,
            "predicted": self.predicted,
            "policy": self.policy,
            "confidence": self.confidence,
            "text": self.text,
            "location": str(self.location) if self.location else None,
        }


@dataclass(frozen=True)
class StoryResult:
    """One evaluated test story (an ``or`` alternative counts as a story of its own)."""

    name: str
    location: Location | None = field(default=None, compare=False)
    num_actions: int = 0
    num_wrong_actions: int = 0
    num_wrong_intents: int = 0  # user turns NLU got wrong (intent, or entities)

    @property
    def passed(self) -> bool:
        return not (self.num_wrong_actions or self.num_wrong_intents)

    @property
    def title(self) -> str:
        """``name (file)``, as Rasa names failed stories."""
        return f"{self.name} ({self.location.file})" if self.location else self.name


@dataclass(frozen=True)
class FailedStory:
    """A test story with at least one wrong prediction, with the story's own events."""

    name: str
    location: Location | None
    events: tuple[Event, ...]  # the story's events (gold intents and actions), listens included
    mistakes: tuple[Mistake, ...]

    @property
    def title(self) -> str:
        return f"{self.name} ({self.location.file})" if self.location else self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "location": str(self.location) if self.location else None,
            "mistakes": [m.to_dict() for m in self.mistakes],
        }


@dataclass(frozen=True)
class StoryEvaluation:
    """Everything one story test run produced. Treat the dicts as read-only."""

    num_stories: int
    num_correct: int
    accuracy: float  # story level: share of stories without any wrong prediction
    action_report: dict[str, Any]  # shaped like Rasa's story_report.json
    failed: list[FailedStory]
    stories: tuple[StoryResult, ...] = ()
    predictions: tuple[dict[str, Any], ...] = ()  # Rasa's "actions" list: action, predicted, policy, confidence

    def render_failed_stories_yaml(self) -> str:
        """The failed stories in Rasa's ``failed_test_stories.yml`` form."""
        if not self.failed:
            return "# None of the test stories failed - all good!\n"
        lines = [f'version: "{YAML_VERSION}"', "stories:"]
        for story in self.failed:
            lines.extend(_render_story(story))
        return "\n".join(lines) + "\n"

    def render_junit_xml(self) -> str:
        """A JUnit report: one test case per story, failures carry the failed story."""
        failures = self.num_stories - self.num_correct
        suites = ET.Element("testsuites", name="deltatrain", tests=str(self.num_stories), failures=str(failures))
        suite = ET.SubElement(
            suites, "testsuite", name="stories", tests=str(self.num_stories), failures=str(failures), errors="0", skipped="0"
        )
        failed = {(f.name, str(f.location)): f for f in self.failed}
        for result in self.stories:
            case = ET.SubElement(
                suite, "testcase", classname=result.location.file if result.location else "stories", name=result.name
            )
            story = failed.get((result.name, str(result.location)))
            if story is not None:
                failure = ET.SubElement(
                    case, "failure", type="WrongPrediction", message="; ".join(m.describe() for m in story.mistakes)
                )
                failure.text = "\n".join(_render_story(story)) + "\n"
        ET.indent(suites)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_stories": self.num_stories,
            "num_correct": self.num_correct,
            "accuracy": self.accuracy,
            "action_report": self.action_report,
            "failed": [f.to_dict() for f in self.failed],
        }


# --------------------------------------------------------------------- evaluate


@dataclass
class _Case:
    trajectory: Trajectory
    played: Replay
    intent_mistakes: list[Mistake]
    first_row: int = 0
    selections: dict[int, Mapping[str, Any]] = field(default_factory=dict)  # event index -> response_selector


def full_retrieval_name(predicted: str, selection: Mapping[str, Any] | None) -> str:
    """The response (``utter_faq/ask_price``) the retrieval action ``predicted`` (``utter_faq``) utters.

    ``selection`` is the parse result's ``response_selector`` of the latest user message;
    the selector of the action's retrieval intent answers, else the ``default`` one. Without
    an answer, ``predicted`` itself (Rasa's ``get_full_retrieval_name``).
    """
    if not selection:
        return predicted
    intent = predicted[len("utter_") :]
    chosen = selection.get(intent) or selection.get("default")
    response = chosen.get("response") if isinstance(chosen, Mapping) else None
    name = response.get("utter_action") if isinstance(response, Mapping) else None
    return str(name) if name else predicted


def evaluate_stories(model: CoreModel, test_stories: Sequence[Story], *, parse: Parse | None = None) -> StoryEvaluation:
    """Run the test stories through ``model`` (and user texts through ``parse`` when given)."""
    graph = expand_stories([replace(s, kind="test") for s in test_stories if not s.is_rule])
    cases: list[_Case] = []
    histories: list[tuple[State, ...]] = []
    parsed: dict[str, tuple[str | None, tuple[EntityValue, ...]]] = {}  # 'or' alternatives repeat texts
    selected: dict[str, Mapping[str, Any]] = {}  # text -> the parse result's response_selector
    for trajectory in graph.trajectories:
        events = list(trajectory.events)
        mistakes: list[Mistake] = []
        selections: dict[int, Mapping[str, Any]] = {}
        if parse is not None:
            for index, event in enumerate(events):
                if not isinstance(event, UserUttered) or not event.text:
                    continue
                if event.text not in parsed:
                    parse_result = parse(event.text)
                    user = UserUttered.from_parse(parse_result, text=event.text)
                    parsed[event.text] = (user.intent, user.entities)
                    selection = parse_result.get("response_selector")
                    if isinstance(selection, Mapping):
                        selected[event.text] = selection
                if event.text in selected:
                    selections[index] = selected[event.text]
                name, entities = parsed[event.text]
                gold, predicted = base_intent(event.intent), base_intent(name)
                where = trajectory.origins[index].location
                if gold is None:
                    events[index] = UserUttered(name, entities, event.text)  # text only: what NLU understood
                elif predicted != gold:
                    mistakes.append(Mistake("intent", index, gold, str(predicted), text=event.text,
                                            predicted_entities=entities, location=where))
                elif _entity_set(entities) != _entity_set(event.entities):
                    mistakes.append(Mistake("entities", index, _describe_entities(event.entities),
                                            _describe_entities(entities), text=event.text,
                                            predicted_entities=entities, location=where))
        played = replay_turn_by_turn(events, model.spec)
        case = _Case(trajectory, played, mistakes, len(histories), selections)
        histories.extend(played.history(k) for k in range(len(played.actions)))
        cases.append(case)

    ted = model.ted_probabilities(histories)
    retrieval_actions = {retrieval_action(a) for a in model.spec.actions if retrieval_action(a) != a}  # utter_faq
    golds: list[str] = []
    predicted_actions: list[str] = []
    predictions: list[dict[str, Any]] = []
    results: list[StoryResult] = []
    failed: list[FailedStory] = []
    for case in cases:
        mistakes = list(case.intent_mistakes)
        played = case.played

        def predict(k: int, history: tuple[State, ...], rejected: bool, case: _Case = case) -> tuple[str, Prediction]:
            row = None if ted is None else ted[case.first_row + k]
            prediction = model.predict_from_states(history, loop_rejected=rejected, ted_probabilities=row)
            # Rasa's _get_predicted_action_name: a retrieval action that is not the story's names its response
            if prediction.action in retrieval_actions and prediction.action != case.played.actions[k]:
                selection = _latest_selection(case, k)
                prediction = replace(prediction, action=full_retrieval_name(prediction.action, selection))
            return prediction.action, prediction

        for k, gold, _, prediction in replay_predictions(played, predict):
            golds.append(gold)
            predicted_actions.append(prediction.action)
            predictions.append(
                {"action": gold, "predicted": prediction.action, "policy": prediction.policy,
                 "confidence": prediction.confidence}
            )
            if prediction.action != gold:
                position = played.event_index[k]
                mistakes.append(
                    Mistake("action", position, gold, prediction.action, prediction.policy, prediction.confidence,
                            location=case.trajectory.origins[position].location if position >= 0 else None)
                )
        mistakes.sort(key=lambda m: m.event_index)
        wrong_actions = sum(1 for m in mistakes if m.kind == "action")
        result = StoryResult(
            case.trajectory.name, case.trajectory.location, len(played.actions), wrong_actions, len(mistakes) - wrong_actions
        )
        results.append(result)
        if not result.passed:
            failed.append(FailedStory(case.trajectory.name, case.trajectory.location, case.trajectory.events, tuple(mistakes)))

    num_stories = len(results)
    num_correct = sum(1 for r in results if r.passed)
    accuracy = num_correct / num_stories if num_stories else 0.0
    report = classification_report(golds, predicted_actions)
    if num_stories:
        report["conversation_accuracy"] = {
            "accuracy": accuracy,
            "correct": num_correct,
            "with_warnings": 0,
            "total": num_stories,
        }
    return StoryEvaluation(num_stories, num_correct, accuracy, report, failed, tuple(results), tuple(predictions))


def _entity_set(entities: Sequence[EntityValue]) -> set[tuple[str, str]]:
    """What Rasa's story test compares of a user turn's entities (type and value; roles and groups not)."""
    return {(e.entity, "" if e.value is None else str(e.value)) for e in entities}


def _describe_entities(entities: Sequence[EntityValue]) -> str:
    return "[" + ", ".join(f"{name}={value!r}" for name, value in sorted(_entity_set(entities))) + "]"


def _latest_selection(case: _Case, k: int) -> Mapping[str, Any] | None:
    """The response_selector of the latest user message before the case's ``k``-th action."""
    position = case.played.event_index[k]
    events = case.trajectory.events
    users = [i for i in range(max(position, 0)) if isinstance(events[i], UserUttered)]
    return case.selections.get(users[-1]) if users else None


# ------------------------------------------------------------------------ render

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_ ./()'>-]*")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    """A YAML scalar: plain when unambiguous, else JSON (valid YAML flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _RESERVED and value == value.strip():
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(_jsonable(value), ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _comment(text: str) -> str:
    return "  # " + " ".join(text.split())


def _annotated(text: str, entities: Sequence[EntityValue]) -> str:
    """Rasa's ``format_message``: the text with predicted entities marked up where found."""
    for entity in entities:
        value = str(entity.value) if entity.value is not None else None
        if value and value in text:
            text = text.replace(value, f"[{value}]({entity.entity})", 1)
    return text


def _render_entity(entity: EntityValue) -> list[str]:
    if entity.role is None and entity.group is None:
        if entity.value is None:
            return [f"    - {_scalar(entity.entity)}"]
        return [f"    - {_scalar(entity.entity)}: {_scalar(entity.value)}"]
    lines = [f"    - entity: {_scalar(entity.entity)}"]
    for key in ("value", "role", "group"):
        value = getattr(entity, key)
        if value is not None:
            lines.append(f"      {key}: {_scalar(value)}")
    return lines


def _render_story(story: FailedStory) -> list[str]:
    wrong = {m.event_index: m for m in story.mistakes}
    lines = [f"- story: {_scalar(story.title)}", "  steps:"]
    for index, event in enumerate(story.events):
        mistake = wrong.get(index)
        if isinstance(event, UserUttered):
            line = f"  - intent: {_scalar(event.intent)}"
            if mistake is not None:
                intent = event.intent if mistake.kind == "entities" else mistake.predicted
                line += _comment(f"predicted: {intent}: {_annotated(mistake.text or '', mistake.predicted_entities)}")
            lines.append(line)
            if event.entities:
                lines.append("    entities:")
                for entity in event.entities:
                    lines.extend(_render_entity(entity))
        elif isinstance(event, ActionExecuted):
            if event.name == ACTION_LISTEN and mistake is None:
                continue  # Rasa writes action_listen only where it was predicted wrongly
            line = f"  - action: {_scalar(event.name)}"
            if mistake is not None:
                line += _comment(f"predicted: {mistake.predicted}")
            lines.append(line)
        elif isinstance(event, SlotSet):
            lines.extend(["  - slot_was_set:", f"    - {_scalar(event.name)}: {_scalar(event.value)}"])
        elif isinstance(event, ActiveLoop):
            lines.append(f"  - active_loop: {_scalar(event.name)}")
    return lines
