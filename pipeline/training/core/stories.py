"""Stories and rules expanded into whole conversations, as Rasa's story graph does.

* ``or`` steps: one conversation per alternative (the product over a story's ``or`` steps).
* ``checkpoint`` steps: a story (block) that starts with checkpoint ``X`` continues every
  block that ends with ``X``; a checkpoint in the middle of a story ends one block and
  starts the next. Conversations start at blocks without a start checkpoint and end at
  blocks without an end checkpoint. A block is used at most once per conversation
  (Rasa's augmentation, which glues unrelated stories together, is not done).
* ``action_listen`` is inserted before every user turn after a bot action, and once at the
  end unless the last event is a listen (a rule with ``wait_for_user_input: false`` gets none).

Every event keeps its :class:`Origin` (story name and file:line) so that training
errors can point at the step that caused them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

from pipeline.data.model import (
    ActionStep,
    ActiveLoopStep,
    CheckpointStep,
    Domain,
    Location,
    OrStep,
    SlotStep,
    Step,
    Story,
    UserStep,
)
from pipeline.errors import TrainingError

from .states import DEFAULT_INTENTS, REQUESTED_SLOT, RESTART_EVENT, DomainSpec, base_intent
from .tracker import ACTION_LISTEN, ActionExecuted, ActiveLoop, Event, SlotSet, UserUttered

__all__ = [
    "Origin",
    "Trajectory",
    "StoryGraph",
    "expand_stories",
    "check_story_data",
    "text_only_turns",
    "label_text_turns",
    "resolve_bot_texts",
    "MAX_CONVERSATIONS",
]

#: Refuse story graphs that expand to more conversations than this.
MAX_CONVERSATIONS = 100_000
_GRAPH_HINT = "reduce the number of 'or' alternatives or checkpoint joins"


@dataclass(frozen=True)
class Origin:
    """Where an event comes from: the story or rule, and the step's file:line."""

    story: str
    location: Location | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"'{self.story}'" + (f" ({self.location})" if self.location else "")


@dataclass(frozen=True)
class Trajectory:
    """One whole conversation of a story, rule or test story, ready to replay."""

    name: str  # names of the joined blocks, " > "-separated
    kind: str  # story | rule | test
    events: tuple[Event, ...]
    origins: tuple[Origin, ...]  # one per event
    location: Location | None = field(default=None, compare=False)
    conversation_start: bool = False
    condition: tuple[Event, ...] = ()  # rules: what must hold before the rule applies

    @property
    def is_rule(self) -> bool:
        return self.kind == "rule"


@dataclass(frozen=True)
class StoryGraph:
    """The expansion of a set of stories: conversations and what was left unused."""

    trajectories: tuple[Trajectory, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Block:
    story: Story
    start: tuple[str, ...]
    end: tuple[str, ...]
    variants: tuple[tuple[tuple[Event, Origin], ...], ...]


def _step_events(step: Step, origin: Origin) -> list[list[tuple[Event, Origin]]]:
    """The alternatives of one step: a list of event lists (one unless it is an ``or``)."""
    if isinstance(step, UserStep):
        return [[(UserUttered(step.intent, tuple(step.entities), step.text), origin)]]
    if isinstance(step, ActionStep):
        return [[(ActionExecuted(step.name), origin)]]
    if isinstance(step, SlotStep):
        return [[(SlotSet(name, value), origin) for name, value in step.slots]]
    if isinstance(step, ActiveLoopStep):
        return [[(ActiveLoop(step.name), origin)]]
    if isinstance(step, OrStep):
        alternatives = []
        for alternative in step.alternatives:
            alternatives.extend(_step_events(alternative, Origin(origin.story, alternative.location or step.location)))
        if not alternatives:
            raise TrainingError(f"'or' step of '{origin.story}' has no alternatives", location=step.location,
                                hint="list at least one intent or slot_was_set under 'or:'")
        return alternatives
    raise TrainingError(f"unexpected step {type(step).__name__} in '{origin.story}'", location=origin.location)


def _variants(story: Story, steps: Sequence[Step]) -> tuple[tuple[tuple[Event, Origin], ...], ...]:
    per_step = [_step_events(step, Origin(story.name, step.location or story.location)) for step in steps]
    count = 1
    for alternatives in per_step:
        count *= len(alternatives)
    if count > MAX_CONVERSATIONS:
        raise TrainingError(
            f"'{story.name}' has {count} combinations of 'or' alternatives (limit {MAX_CONVERSATIONS})",
            location=story.location,
            hint=_GRAPH_HINT,
        )
    return tuple(tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*per_step))


def _blocks(story: Story) -> list[_Block]:
    """Split a story at its checkpoints (Rasa's StoryStepBuilder)."""
    blocks: list[_Block] = []
    start: list[str] = []
    end: list[str] = []
    steps: list[Step] = []
    for step in story.steps:
        if isinstance(step, CheckpointStep):
            (end if steps else start).append(step.name)
            continue
        if end:
            blocks.append(_Block(story, tuple(start), tuple(end), _variants(story, steps)))
            start, end, steps = list(end), [], []
        steps.append(step)
    blocks.append(_Block(story, tuple(start), tuple(end), _variants(story, steps)))
    return blocks


def _finish(
    pairs: Sequence[tuple[Event, Origin]], *, final_listen: bool
) -> tuple[tuple[Event, ...], tuple[Origin, ...]]:
    """Insert listens before user turns after bot actions, and one at the end if asked."""
    events: list[Event] = []
    origins: list[Origin] = []
    last_action: str | None = None
    for event, origin in pairs:
        if isinstance(event, UserUttered) and last_action not in (None, ACTION_LISTEN):
            events.append(ActionExecuted(ACTION_LISTEN))
            origins.append(origin)
            last_action = ACTION_LISTEN
        if isinstance(event, ActionExecuted):
            last_action = event.name
        events.append(event)
        origins.append(origin)
    # Rasa's StoryStep.explicit_events: a listen at the end unless the last event is one
    # (so also after a story's last user turn)
    if final_listen and pairs and events[-1] != ActionExecuted(ACTION_LISTEN):
        last_origin = next((o for e, o in zip(reversed(events), reversed(origins)) if isinstance(e, ActionExecuted)),
                           origins[-1])
        events.append(ActionExecuted(ACTION_LISTEN))
        origins.append(last_origin)
    return tuple(events), tuple(origins)


def _expand_rule(rule: Story) -> list[Trajectory]:
    for step in (*rule.condition, *rule.steps):
        if isinstance(step, CheckpointStep):
            raise TrainingError(
                f"rule '{rule.name}' contains a checkpoint; rules cannot use checkpoints",
                location=step.location or rule.location,
                hint="write the rule's full condition and steps, or make it a story",
            )
    condition: list[Event] = []
    for step in rule.condition:
        if not isinstance(step, (SlotStep, ActiveLoopStep)):
            raise TrainingError(
                f"condition of rule '{rule.name}' may only hold slot_was_set and active_loop, got {type(step).__name__}",
                location=step.location or rule.location,
                hint="move user and action steps from 'condition:' to 'steps:'",
            )
        condition.extend(e for e, _ in _step_events(step, Origin(rule.name, step.location))[0])
    result = []
    for variant in _variants(rule, rule.steps):
        events, origins = _finish(variant, final_listen=rule.wait_for_user_input)
        result.append(
            Trajectory(
                name=rule.name,
                kind="rule",
                events=events,
                origins=origins,
                location=rule.location,
                conversation_start=rule.conversation_start,
                condition=tuple(condition),
            )
        )
    return result


def expand_stories(stories: Iterable[Story]) -> StoryGraph:
    """Expand stories, rules and test stories into whole conversations.

    Stories join only stories of their own kind (training stories with
    training stories, test stories with test stories); rules never join.
    """
    trajectories: list[Trajectory] = []
    warnings: list[str] = []
    by_kind: dict[str, list[Story]] = {}
    for story in stories:
        if story.is_rule:
            trajectories.extend(_expand_rule(story))
        else:
            by_kind.setdefault(story.kind, []).append(story)
    for kind, group in by_kind.items():
        graph_trajectories, graph_warnings = _expand_graph(kind, group)
        trajectories.extend(graph_trajectories)
        warnings.extend(graph_warnings)
    return StoryGraph(tuple(trajectories), tuple(warnings))


def _expand_graph(kind: str, stories: Sequence[Story]) -> tuple[list[Trajectory], list[str]]:
    blocks = [block for story in stories for block in _blocks(story)]
    starting: dict[str, list[int]] = {}
    for index, block in enumerate(blocks):
        for name in block.start:
            starting.setdefault(name, []).append(index)
    ended = {name for block in blocks for name in block.end}
    warnings = [
        f"checkpoint '{name}' that starts story '{blocks[i].story.name}' ({blocks[i].story.location}) is never reached"
        for name, indexes in sorted(starting.items())
        if name not in ended
        for i in indexes
    ]
    warnings.extend(
        f"checkpoint '{name}' at the end of '{block.story.name}' ({block.story.location}) starts no story; "
        "the conversation ends there"
        for block in blocks
        for name in block.end
        if name not in starting
    )
    result: list[Trajectory] = []

    def emit(path: tuple[int, ...], pairs: tuple[tuple[Event, Origin], ...]) -> None:
        if len(result) >= MAX_CONVERSATIONS:
            first = blocks[path[0]].story
            raise TrainingError(
                f"the stories expand to more than {MAX_CONVERSATIONS} conversations through checkpoints and 'or' steps",
                location=first.location,
                hint=_GRAPH_HINT,
            )
        events, origins = _finish(pairs, final_listen=True)
        names = list(dict.fromkeys(blocks[i].story.name for i in path))
        result.append(Trajectory(" > ".join(names), kind, events, origins, blocks[path[0]].story.location))

    def walk(path: tuple[int, ...], pairs: tuple[tuple[Event, Origin], ...]) -> None:
        block = blocks[path[-1]]
        for variant in block.variants:
            extended = pairs + variant
            successors = [i for name in block.end for i in starting.get(name, []) if i not in path]
            if not successors:
                emit(path, extended)
            for successor in dict.fromkeys(successors):
                walk(path + (successor,), extended)

    for index, block in enumerate(blocks):
        if not block.start:
            walk((index,), ())
    return result, warnings


def check_story_data(trajectories: Sequence[Trajectory], domain: Domain, spec: DomainSpec) -> None:
    """Raise TrainingError naming the story and step of every name missing from the domain."""
    intents = {base_intent(i.name) for i in domain.intents} | set(DEFAULT_INTENTS)
    entities = set(domain.entity_names)
    forms = set(domain.form_names)
    problems: list[tuple[Origin, str]] = []
    seen: set[tuple[str, str]] = set()

    def report(origin: Origin, what: str) -> None:
        key = (str(origin), what)
        if key not in seen:
            seen.add(key)
            problems.append((origin, what))

    for trajectory in trajectories:
        pairs = list(zip(trajectory.condition, itertools.repeat(Origin(trajectory.name, trajectory.location))))
        pairs += list(zip(trajectory.events, trajectory.origins))
        for event, origin in pairs:
            if isinstance(event, UserUttered):
                if not event.intent:
                    report(origin, "user turn without an intent (a text-only turn is labelled by the NLU model only when it is trained together with the dialogue model; or add 'intent:')")
                elif base_intent(event.intent) not in intents:
                    report(origin, f"intent '{event.intent}' is not in the domain")
                for entity in event.entities:
                    if entity.entity not in entities:
                        report(origin, f"entity '{entity.entity}' is not in the domain")
            elif isinstance(event, ActionExecuted):
                if not spec.has_action(event.name) and event.name != RESTART_EVENT:  # an event, not an action
                    report(origin, f"action '{event.name}' is not in the domain")
            elif isinstance(event, SlotSet):
                # a value of the wrong type trains, as in Rasa: it is featurised as "not set"
                # (validation warns about it)
                if event.name not in spec.known_slots:
                    report(origin, f"slot '{event.name}' is not in the domain")
            elif isinstance(event, ActiveLoop):
                # as in Rasa, any action may be a loop (action_two_stage_fallback is one of Rasa's defaults)
                if event.name is not None and event.name not in forms and not spec.has_action(event.name):
                    report(origin, f"active_loop '{event.name}' is not a form in the domain")
    if problems:
        lines = [f"{origin}: {what}" for origin, what in problems[:10]]
        more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise TrainingError(
            f"the stories/rules use names the domain does not define ({len(problems)} problem(s)):\n"
            + "\n".join("  " + line for line in lines)
            + more,
            location=problems[0][0].location,
            hint="add the missing names to domain.yml or fix their spelling; "
            f"'{REQUESTED_SLOT}' and Rasa's default intents and actions are always defined",
        )


def text_only_turns(stories: Sequence[Story]) -> list[str]:
    """The texts of user turns written without an intent (``- user: ...`` alone), in order, once each."""
    texts: dict[str, None] = {}
    for story in stories:
        for step in (*story.condition, *story.steps):
            for user in step.alternatives if isinstance(step, OrStep) else (step,):
                if isinstance(user, UserStep) and not user.intent and user.text:
                    texts.setdefault(user.text.strip(), None)
    return list(texts)


def _continuations(stories: Sequence[Story]) -> dict[tuple[str | None, str], set[str]]:
    """For each (previous action, intent) in the labelled turns of ``stories``: the actions that follow."""
    found: dict[tuple[str | None, str], set[str]] = {}
    for story in stories:
        previous: str | None = None
        key_previous: str | None = None
        pending: str | None = None
        for step in story.steps:
            if isinstance(step, UserStep):
                pending = step.intent or None
                key_previous = previous
            elif isinstance(step, ActionStep) and not step.is_text:
                if pending is not None:
                    found.setdefault((key_previous, pending), set()).add(step.name)
                    pending = None
                previous = step.name
            elif isinstance(step, (OrStep, CheckpointStep)):
                pending, previous = None, None
    return found


def label_text_turns(
    stories: Sequence[Story], rankings: Mapping[str, Sequence[str]]
) -> tuple[list[Story], list[str]]:
    """Give every text-only user turn an intent from the NLU ranking of its text; the warnings saying so.

    Rasa trains such end-to-end turns on the text itself; deltatrain's dialogue model is
    trained on intents, so the caller passes, for each text (:func:`text_only_turns`), the
    intents its freshly trained NLU model ranks for it, best first. The turn gets the best
    ranked intent after which, following the same previous action, the other stories go on
    with the same action as this one (so a story does not contradict the others); else the
    NLU model's best. A text without a ranking stays unlabelled (:func:`check_story_data`
    reports it).
    """
    continuations = _continuations(stories)
    warnings: list[str] = []

    def choose(text: str, previous: str | None, following: str | None) -> tuple[str, bool]:
        ranking = list(rankings[text])
        for intent in ranking:
            if following is not None and following in continuations.get((previous, intent), ()):
                return intent, intent != ranking[0]
        return ranking[0], False

    def label_story(story: Story) -> Story:
        steps = list(story.steps)
        previous: str | None = None
        for index, step in enumerate(steps):
            if isinstance(step, ActionStep) and not step.is_text:
                previous = step.name
            elif isinstance(step, (OrStep, CheckpointStep)):
                previous = None
            if not (isinstance(step, UserStep) and not step.intent and step.text and rankings.get(step.text.strip())):
                continue
            text = step.text.strip()
            following = next((s.name for s in steps[index + 1:] if isinstance(s, ActionStep) and not s.is_text), None)
            intent, by_story = choose(text, previous, following)
            where = f"{step.location}: " if step.location is not None else ""
            why = (
                f"the NLU model ranks it {list(rankings[text]).index(intent) + 1}. and the other stories go on "
                f"with '{following}' after it" if by_story else "which the NLU model predicts for it"
            )
            warnings.append(
                f"{where}user turn '{text}' has no intent: trained as intent '{intent}', {why} "
                "(Rasa trains end-to-end on the text)"
            )
            steps[index] = replace(step, intent=intent)
        return replace(story, steps=tuple(steps))

    return [label_story(story) for story in stories], warnings


def resolve_bot_texts(stories: Sequence[Story], domain: Domain) -> tuple[list[Story], list[str]]:
    """Replace each ``bot: <text>`` step by the response action that says that text; warnings saying so.

    Rasa trains end-to-end bot turns on their text; deltatrain's dialogue model predicts
    actions, so a bot text is trained as the response whose variation has exactly that
    text. Raises TrainingError (file:line) for a bot text no response says.
    """
    says: dict[str, str] = {}
    for name, variations in domain.responses.items():
        for variation in variations or ():
            if isinstance(variation, Mapping) and isinstance(variation.get("text"), str):
                says.setdefault(" ".join(variation["text"].split()), name)
    warnings: list[str] = []

    def resolve(step: Step, story: Story) -> Step:
        if not (isinstance(step, ActionStep) and step.is_text):
            return step
        action = says.get(" ".join(step.name.split()))
        if action is None:
            raise TrainingError(
                f"bot text '{step.name}' in '{story.name}' is said by no response in the domain",
                location=step.location or story.location,
                hint="deltatrain's dialogue model predicts actions, not texts: write '- action: utter_...' "
                "or add a response with this text to domain.yml",
            )
        where = f"{step.location}: " if step.location is not None else ""
        warnings.append(f"{where}bot text '{step.name}' is trained as the response '{action}' that says it")
        return ActionStep(action, step.location)

    resolved = [replace(story, steps=tuple(resolve(s, story) for s in story.steps)) for story in stories]
    return resolved, warnings
