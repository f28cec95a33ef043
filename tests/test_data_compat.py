"""Data the way Rasa 3.6 reads it: what Rasa accepts is accepted, what it rejects is an error with file:line.

Each test is a regression test for a false error or a missed mistake found on
real assistants (issues 11 and 12), with the YAML inline. Severities follow
what ``rasa data validate`` 3.6.21 does with the same files (noted per test).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping

import git
import pytest

from pipeline.cli import main
from pipeline.data.loader import DirectorySource, FileSource, ProjectPaths, load_project
from pipeline.data.model import Project
from pipeline.errors import DataError, Location, Problem
from pipeline.gitrepo import GitCommitSource
from pipeline.training.core.states import DomainSpec
from pipeline.validation import validate_project
from tests.helpers import write_project

DOMAIN = textwrap.dedent(
    """\
    version: "3.1"
    intents:
      - greet
      - bye
    entities:
      - city
    slots:
      size:
        type: categorical
        values: [small, large]
        mappings:
        - type: from_entity
          entity: city
    responses:
      utter_greet:
        - text: Hi!
      utter_bye:
        - text: Bye!
    """
)
NLU = """\
nlu:
- intent: greet
  examples: |
    - hi
    - hello
- intent: bye
  examples: |
    - bye
    - bye from [Rome](city)
"""
BASE = {"config.yml": "language: en\n", "domain.yml": DOMAIN, "data/nlu.yml": NLU}


def stories(*steps: str, name: str = "s", key: str = "stories") -> str:
    """A stories (or rules) file with one entry whose steps start on line 4."""
    kind = "story" if key == "stories" else "rule"
    return f"{key}:\n- {kind}: {name}\n  steps:\n" + "".join(f"  {step}\n" for step in steps)


def load(tmp_path: Path, overrides: Mapping[str, str | None]) -> tuple[Project, tuple[Problem, ...]]:
    files = {path: text for path, text in {**BASE, **overrides}.items() if text is not None}
    return load_project(DirectorySource(write_project(tmp_path, files)), ProjectPaths())


def problems_of(tmp_path: Path, overrides: Mapping[str, str | None]) -> list[tuple[str, str, str]]:
    """(severity, code, file:line) of every load warning and validation finding."""
    project, warnings = load(tmp_path, overrides)
    return sorted((p.severity, p.code, str(p.location)) for p in (*warnings, *validate_project(project)))


def load_errors(tmp_path: Path, overrides: Mapping[str, str | None]) -> list[Problem]:
    with pytest.raises(DataError) as caught:
        load(tmp_path, overrides)
    return [p for p in caught.value.problems if p.is_error]


# ------------------------------------------------------------ false errors (issue 11)


def test_categorical_slot_takes_values_outside_its_list(tmp_path: Path) -> None:
    """Rasa featurises an unlisted value as ``__other__``; ``rasa data validate`` says nothing."""
    story = stories("- intent: greet", "- slot_was_set:\n    - size: medium", "- action: utter_greet",
                    "- slot_was_set:\n    - size: __other__", "- slot_was_set:\n    - size: 3")
    assert problems_of(tmp_path, {"data/stories.yml": story}) == []


def test_categorical_value_outside_the_list_is_featurised_as_other(tmp_path: Path) -> None:
    project, _ = load(tmp_path, {})
    (size,) = DomainSpec.from_domain(project.domain).slots
    assert size.featurize("medium") == size.featurize("__other__") != size.featurize("small")


@pytest.mark.parametrize(
    "loop",
    [
        pytest.param("action_two_stage_fallback", id="rasa-default-loop"),
        pytest.param("action_custom_loop", id="custom-loop-action"),
    ],
)
def test_default_and_custom_loop_actions_are_valid_active_loops(tmp_path: Path, loop: str) -> None:
    """Rasa's validator accepts any action of the domain (defaults included) as an active_loop."""
    rule = stories("- intent: nlu_fallback", f"- action: {loop}", f"- active_loop: {loop}", key="rules")
    domain = DOMAIN + "actions:\n  - action_custom_loop\n"
    assert problems_of(tmp_path, {"data/rules.yml": rule, "domain.yml": domain}) == []


def test_an_unknown_active_loop_is_still_an_error(tmp_path: Path) -> None:
    rule = stories("- intent: greet", "- action: utter_greet", "- active_loop: greet_form", key="rules")
    assert problems_of(tmp_path, {"data/rules.yml": rule}) == [("error", "unknown-form", "data/rules.yml:6")]


def test_use_and_ignore_entities_are_read_and_decide_what_the_dialogue_sees(tmp_path: Path) -> None:
    domain = DOMAIN.replace(
        "  - greet\n  - bye\n",
        "  - greet:\n      use_entities: [city]\n  - bye:\n      ignore_entities: [city]\n"
        "  - thank:\n      use_entities: false\n  - deny:\n      use_entities: []\n",
    ).replace("  - city\n", "  - city\n  - name\n")
    project, _ = load(tmp_path, {"domain.yml": domain})
    intents = {i.name: (i.use_entities, i.ignore_entities) for i in project.domain.intents}
    assert intents == {"greet": (("city",), ()), "bye": (None, ("city",)), "thank": ((), ()), "deny": ((), ())}
    seen = DomainSpec.from_domain(project.domain).intent_entities
    assert seen == {"greet": ("city",), "bye": ("name",), "thank": (), "deny": ()}


def test_use_entities_written_as_a_string_is_a_warning_and_uses_no_entities(tmp_path: Path) -> None:
    """Rasa 3.6 accepts ``use_entities: None`` (a string) and takes its characters as entity names."""
    domain = DOMAIN.replace("  - bye\n", "  - bye:\n      use_entities: None\n")
    assert problems_of(tmp_path, {"domain.yml": domain}) == [("warning", "schema", "domain.yml:4")]
    project, _ = load(tmp_path, {"domain.yml": domain})
    assert DomainSpec.from_domain(project.domain).intent_entities["bye"] == ()


def test_an_entity_both_used_and_ignored_is_a_warning(tmp_path: Path) -> None:
    """Rasa: "explicitly included and excluded ... Excluding takes precedence" (a warning)."""
    domain = DOMAIN.replace("  - bye\n", "  - bye:\n      use_entities: [city]\n      ignore_entities: [city]\n")
    project, warnings = load(tmp_path, {"domain.yml": domain})
    assert [(w.code, str(w.location)) for w in warnings] == [("schema", "domain.yml:4")]
    assert "ignoring wins" in warnings[0].message
    assert DomainSpec.from_domain(project.domain).intent_entities["bye"] == ()


# --------------------------------------------------- data Rasa rejects (issue 11)


def test_examples_written_as_a_yaml_list_of_strings_are_errors(tmp_path: Path) -> None:
    """Rasa: YamlValidationException "Value 'hey' is not a dict"; '- text:' items stay valid."""
    nlu = "nlu:\n- intent: greet\n  examples:\n  - hey\n  - text: howdy\n  - 42\n"
    errors = load_errors(tmp_path, {"data/more.yml": nlu})
    assert [str(e.location) for e in errors] == ["data/more.yml:4", "data/more.yml:6"]
    assert "YAML list" in errors[0].message and "the text 'hey'" in errors[0].message
    assert errors[0].hint is not None and "examples: |" in errors[0].hint


@pytest.mark.parametrize(
    ("variation", "fragment"),
    [
        pytest.param("- Bye!", "must be a mapping with 'text:', got the text 'Bye!'", id="bare-string"),
        pytest.param("- image: https://example.com/bye.png", "neither 'text' nor 'custom' (keys: image)", id="image-only"),
        pytest.param("- text: null", "neither 'text' nor 'custom' (keys: text)", id="null-text"),
    ],
)
def test_response_variation_without_text_is_an_error(tmp_path: Path, variation: str, fragment: str) -> None:
    """Rasa's responses schema: each variation is a mapping with 'text' or 'custom'."""
    domain = DOMAIN.replace("    - text: Bye!\n", f"    - text: Bye!\n    {variation}\n")
    (error,) = load_errors(tmp_path, {"domain.yml": domain})
    assert error.location == Location("domain.yml", 19)
    assert fragment in error.message and error.hint


def test_response_variation_in_a_data_file_is_checked_too(tmp_path: Path) -> None:
    (error,) = load_errors(tmp_path, {"data/faq.yml": "responses:\n  utter_faq/ask_name:\n  - I am a bot\n"})
    assert error.location == Location("data/faq.yml", 3)


def test_response_variations_rasa_accepts(tmp_path: Path) -> None:
    domain = DOMAIN.replace(
        "    - text: Bye!\n",
        "    - text: Bye!\n      image: https://example.com/bye.png\n"
        "    - custom: {blocks: [1]}\n    - text: Later!\n      buttons:\n      - title: ok\n        payload: /greet\n",
    )
    project, _ = load(tmp_path, {"domain.yml": domain})
    assert len(project.domain.responses["utter_bye"]) == 3


@pytest.mark.parametrize(
    ("file", "text", "line", "fragment"),
    [
        pytest.param("data/nlu.yml", NLU + "rule:\n- x\n", 10, "did you mean 'rules'", id="nlu-file"),
        pytest.param("data/stories.yml", stories("- intent: greet", "- action: utter_greet") + "storys: []\n",
                     6, "did you mean 'stories'", id="stories-file"),
        pytest.param("data/nlu.yml", NLU + "intents:\n- greet\n", 10, "belongs in the domain file", id="domain-key"),
    ],
)
def test_unknown_top_level_key_in_a_training_file_is_a_warning(
    tmp_path: Path, file: str, text: str, line: int, fragment: str
) -> None:
    """Rasa's schemas allow any other top-level key and its readers skip it without a word;
    deltatrain warns (a warning never blocks what Rasa trains)."""
    project, warnings = load(tmp_path, {file: text})
    (warning,) = warnings
    assert (warning.severity, str(warning.location)) == ("warning", f"{file}:{line}")
    assert "unknown top-level key" in warning.message and warning.hint and fragment in (warning.hint + warning.message)
    assert len(project.nlu.examples) == 4


# ---------------------------------------------------- missed mistakes (issue 12.8)


def test_dangling_checkpoints_are_warnings_where_they_are_written(tmp_path: Path) -> None:
    """Rasa: "Unsatisfied end checkpoint 'nowhere'" / "Unsatisfied start checkpoint 'start_x'" (warnings)."""
    text = (
        "stories:\n- story: s\n  steps:\n  - intent: greet\n  - action: utter_greet\n  - checkpoint: nowhere\n"
        "- story: t\n  steps:\n  - checkpoint: start_x\n  - intent: bye\n  - action: utter_bye\n"
        "- story: joined\n  steps:\n  - intent: greet\n  - action: utter_greet\n  - checkpoint: next\n"
        "- story: continued\n  steps:\n  - checkpoint: next\n  - intent: bye\n  - action: utter_bye\n"
        "- story: middle\n  steps:\n  - intent: greet\n  - action: utter_greet\n  - checkpoint: half\n"
        "  - intent: bye\n  - action: utter_bye\n"
    )
    assert problems_of(tmp_path, {"data/stories.yml": text}) == [
        ("warning", "checkpoint", "data/stories.yml:6"),
        ("warning", "checkpoint", "data/stories.yml:9"),
    ]


def test_slot_mappings_against_the_domain(tmp_path: Path) -> None:
    """Unknown entity/intent: Rasa skips the mapping with a warning; a condition on a missing form, or on a
    form that does not require the slot, fails ``rasa data validate``."""
    domain = DOMAIN.replace(
        "    - type: from_entity\n      entity: city\n",
        "    - type: from_entity\n      entity: town\n"
        "    - type: from_intent\n      intent: [greet, agree]\n      value: small\n"
        "    - type: from_entity\n      entity: city\n      conditions:\n      - active_loop: shop_form\n"
        "    - type: from_entity\n      entity: city\n      conditions:\n      - active_loop: city_form\n",
    ) + "forms:\n  city_form:\n    required_slots:\n    - where\n  where_form:\n    required_slots: []\n"
    domain = domain.replace("slots:\n", "slots:\n  where:\n    type: text\n    mappings:\n    - type: from_text\n", 1)
    found = problems_of(tmp_path, {"domain.yml": domain})
    assert found == [
        ("error", "slot-mapping", "domain.yml:21"),  # condition on shop_form, which does not exist
        ("error", "slot-mapping", "domain.yml:25"),  # city_form does not require 'size'
        ("warning", "slot-mapping", "domain.yml:16"),  # entity 'town'
        ("warning", "slot-mapping", "domain.yml:18"),  # intent 'agree'

    ]


def test_form_requiring_an_undefined_slot_is_an_error_on_the_slot_line(tmp_path: Path) -> None:
    """Rasa: "The form slot 'nope' in form 'f_form' is not present in the domain slots" fails validation."""
    domain = DOMAIN + "forms:\n  f_form:\n    required_slots:\n    - size\n    - nope\n"
    assert problems_of(tmp_path, {"domain.yml": domain}) == [("error", "unknown-slot", "domain.yml:23")]


def test_intent_listed_twice_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    """Rasa: InvalidDomain "Intents are not unique! Found multiple intents with name(s) ['greet']"."""
    (error,) = load_errors(tmp_path, {"domain.yml": DOMAIN.replace("  - bye\n", "  - bye\n  - greet\n")})
    assert error.location == Location("domain.yml", 5)
    assert "'greet' is listed twice" in error.message and "first on line 3" in error.message


def test_intent_with_a_colon_and_no_properties_is_an_error(tmp_path: Path) -> None:
    """Rasa: InvalidDomain "the intent 'bye' cannot have value of <class 'NoneType'>"."""
    (error,) = load_errors(tmp_path, {"domain.yml": DOMAIN.replace("  - bye\n", "  - bye:\n")})
    assert error.location == Location("domain.yml", 4) and "remove the ':'" in (error.hint or "")


@pytest.mark.parametrize(
    ("example", "fragment"),
    [
        pytest.param("fly to [Paris](city", "[Paris](city", id="missing-parenthesis"),
        pytest.param('fly to [Paris]{"entity": "city"', '[Paris]{"entity"', id="missing-brace"),
    ],
)
def test_unbalanced_entity_bracket_is_a_warning(tmp_path: Path, example: str, fragment: str) -> None:
    """Rasa reads ``[Paris](city`` as plain text and the entity is silently lost; deltatrain warns."""
    project, warnings = load(tmp_path, {"data/more.yml": f"nlu:\n- intent: bye\n  examples: |\n    - {example}\n"})
    (warning,) = warnings
    assert str(warning.location) == "data/more.yml:4" and fragment in warning.message and warning.hint
    (lost,) = [e for e in project.nlu.examples if e.text.startswith("fly to")]
    assert lost.entities == ()


def test_unbalanced_bracket_in_a_story_user_text_is_a_warning(tmp_path: Path) -> None:
    story = stories('- user: "to [Paris](city"\n    intent: bye', "- action: utter_bye")
    _, warnings = load(tmp_path, {"data/stories.yml": story})
    assert [str(w.location) for w in warnings] == ["data/stories.yml:4"]


def test_balanced_annotations_and_plain_brackets_give_no_warning(tmp_path: Path) -> None:
    nlu = "nlu:\n- intent: bye\n  examples: |\n    - to [Paris](city) [sic]\n    - to [Rome]{\"entity\": \"city\"} (now)\n"
    _, warnings = load(tmp_path, {"data/more.yml": nlu})
    assert warnings == ()


@pytest.mark.parametrize(
    "content",
    [pytest.param("", id="empty"), pytest.param("# nothing yet\n", id="comment-only"),
     pytest.param('version: "3.1"\n', id="version-only")],
)
def test_empty_domain_file_is_an_error_that_names_it(tmp_path: Path, content: str) -> None:
    """Rasa: "Encountered empty domain during validation." (fails, without naming the file)."""
    (error,) = load_errors(tmp_path, {"domain.yml": content})
    assert error.location == Location("domain.yml", 1)
    assert "domain file domain.yml is empty" in error.message and error.hint


def test_empty_domain_directory_is_an_error_that_names_it(tmp_path: Path) -> None:
    (error,) = load_errors(tmp_path, {"domain.yml": None, "domain/a.yml": "", "domain/b.yml": 'version: "3.1"\n'})
    assert error.location == Location("domain") and "domain directory domain is empty" in error.message


# ------------------------------------------------------------ symbolic links (issue 12.8)


def outside_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project whose data/ folder is a symbolic link to a folder outside it."""
    outside = write_project(tmp_path / "elsewhere", {"data/nlu.yml": NLU})
    project = write_project(tmp_path / "project", {k: v for k, v in BASE.items() if k != "data/nlu.yml"})
    (project / "data").symlink_to(outside / "data", target_is_directory=True)
    return project, outside


def link_errors(source: FileSource) -> list[Problem]:
    with pytest.raises(DataError) as caught:
        load_project(source, ProjectPaths())
    return [p for p in caught.value.problems if p.is_error]


def test_data_folder_linking_outside_the_project_is_refused(tmp_path: Path) -> None:
    project, outside = outside_project(tmp_path)
    (error,) = link_errors(DirectorySource(project))
    assert error.location == Location("data") and error.code == "symlink"
    assert "leads outside the project" in error.message and str(outside / "data") in error.message


def test_data_file_linking_outside_the_project_is_refused(tmp_path: Path) -> None:
    secret = write_project(tmp_path / "elsewhere", {"secret.yml": "nlu: []\n"}) / "secret.yml"
    project = write_project(tmp_path / "project", BASE)
    (project / "data" / "more.yml").symlink_to(secret)
    (error,) = link_errors(DirectorySource(project))
    assert error.location == Location("data/more.yml") and "outside the project" in error.message


def test_links_inside_the_project_are_followed_on_disk(tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", {**{k: v for k, v in BASE.items() if k != "data/nlu.yml"},
                                                   "training/nlu.yml": NLU})
    (project / "data").symlink_to(project / "training", target_is_directory=True)
    loaded, _ = load_project(DirectorySource(project), ProjectPaths())
    assert len(loaded.nlu.examples) == 4


def commit_all(path: Path) -> git.Repo:
    repo = git.Repo.init(path)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "test")
        cfg.set_value("user", "email", "test@example.invalid")
    repo.git.add(A=True)
    repo.index.commit("data")
    return repo


def test_committed_link_outside_the_project_is_refused_in_a_git_commit(tmp_path: Path) -> None:
    project, outside = outside_project(tmp_path)
    repo = commit_all(project)
    (error,) = link_errors(GitCommitSource(repo, repo.head.commit.hexsha))
    assert error.location == Location("data") and "leads outside the project" in error.message


def test_committed_link_inside_the_project_is_an_error_not_a_yaml_puzzle(tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", {**{k: v for k, v in BASE.items() if k != "data/nlu.yml"},
                                                   "training/nlu.yml": NLU})
    (project / "data").symlink_to("training", target_is_directory=True)
    repo = commit_all(project)
    (error,) = link_errors(GitCommitSource(repo, repo.head.commit.hexsha))
    assert error.location == Location("data") and "(to training)" in error.message
    assert "not followed when reading a git commit" in error.message


def test_validate_and_ci_both_refuse_the_linked_data_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = outside_project(tmp_path)
    commit_all(project)
    monkeypatch.chdir(project)
    assert main(["data", "validate"], environ={}) == 1
    assert main(["ci", "-C", str(project), "--no-upload"], environ={}) == 1
    output = capsys.readouterr()
    text = output.out + output.err
    assert text.count("'data' is a symbolic link that leads outside the project") == 2


# ------------------------------------- what Rasa skips with a warning (oracle: rasa 3.6.21)


@pytest.mark.parametrize(
    ("overrides", "where", "fragment"),
    [
        pytest.param({"data/more.yml": "nlu:\n- intent: greet\n"}, "data/more.yml:2",
                     "intent 'greet' has no 'examples' and is skipped", id="intent-without-examples"),
        pytest.param({"data/more.yml": "nlu:\n- intent: greet\n  examples: |\n    - hey\n    howdy\n"}, "data/more.yml:5",
                     "does not start with '- ' and is skipped: 'howdy'", id="example-without-dash"),
        pytest.param({"data/stories.yml": "stories:\n- story: empty\n"}, "data/stories.yml:2",
                     "story 'empty' has no steps and is skipped", id="story-without-steps"),
        pytest.param({"data/more.yml": 'version: "4.0"\nnlu:\n- intent: greet\n  examples: |\n    - hey\n'},
                     "data/more.yml:1", "newer than 3.1; the file is skipped", id="newer-format-version"),
        pytest.param({"data/more.yml": 'version: "latest"\nnlu:\n- intent: greet\n  examples: |\n    - hey\n'},
                     "data/more.yml:1", "is not a version number; the file is read as version 3.1", id="odd-version"),
        pytest.param({"domain.yml": DOMAIN.replace("    values: [small, large]\n", "")}, "domain.yml:8",
                     "categorical slot 'size' has no 'values'", id="categorical-without-values"),
        pytest.param({"domain.yml": DOMAIN.replace("    mappings:\n    - type: from_entity\n      entity: city\n", "")},
                     "domain.yml:8", "slot 'size' has no 'mappings'; Rasa 3 refuses", id="rasa3-slot-without-mappings"),
        pytest.param({"domain.yml": DOMAIN + "forms:\n  f_form:\n    required_slots:\n      size:\n      - type: from_entity\n"
                                             "        entity: city\n"},
                     "domain.yml:20", "is a Rasa 2 mapping of slots to mappings", id="rasa3-form-with-rasa2-slots"),
    ],
)
def test_what_rasa_skips_or_tolerates_is_a_warning(
    tmp_path: Path, overrides: Mapping[str, str], where: str, fragment: str
) -> None:
    project, warnings = load(tmp_path, overrides)
    assert [str(w.location) for w in warnings] == [where], [w.render() for w in warnings]
    assert fragment in warnings[0].message and warnings[0].hint
    if "skipped" in fragment and "examples" in fragment:
        assert {e.text for e in project.nlu.examples if e.location and e.location.file == "data/more.yml"} <= {"hey"}


def test_a_file_with_a_newer_version_is_not_read(tmp_path: Path) -> None:
    project, _ = load(tmp_path, {"data/more.yml": 'version: "4.0"\nnlu:\n- intent: greet\n  examples: |\n    - hey\n'})
    assert "hey" not in {e.text for e in project.nlu.examples}


def test_rasa2_domain_keeps_its_form_format_without_warnings(tmp_path: Path) -> None:
    domain = DOMAIN.replace('version: "3.1"', 'version: "2.0"').replace(
        "    mappings:\n    - type: from_entity\n      entity: city\n", ""
    ) + "forms:\n  f_form:\n    required_slots:\n      size:\n      - type: from_entity\n        entity: city\n"
    project, warnings = load(tmp_path, {"domain.yml": domain})
    assert warnings == () and project.domain.forms[0].required_slots == ("size",)


# ------------------------------------------ what Rasa's schema rejects (oracle: rasa 3.6.21)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        pytest.param(stories("- intent: greet", "- bot: hello there", key="rules"), 5, "a 'bot' step", id="bot-in-rule"),
        pytest.param(stories("- intent: greet", "- action: utter_greet", "- checkpoint: c1", key="rules"), 6,
                     "a 'checkpoint' step", id="checkpoint-in-rule"),
        pytest.param("rules:\n- rule: r\n  condition:\n  - intent: greet\n  steps:\n  - intent: bye\n  - action: utter_bye\n",
                     4, "a 'intent' step is not allowed in condition of rule 'r'", id="intent-in-condition"),
    ],
)
def test_steps_rasa_does_not_allow_in_rules_are_errors(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    (error,) = load_errors(tmp_path, {"data/rules.yml": text})
    assert error.location == Location("data/rules.yml", line) and fragment in error.message and error.hint


def test_mapping_policy_triggers_are_an_error(tmp_path: Path) -> None:
    """Rasa: "The intent bye in the domain file is using the MappingPolicy format" fails validation."""
    (error,) = load_errors(tmp_path, {"domain.yml": DOMAIN.replace("  - bye\n", "  - bye:\n      triggers: utter_bye\n")})
    assert error.location == Location("domain.yml", 4) and "'- action: utter_bye'" in (error.hint or "")


def test_every_rasa_default_action_is_known_without_declaring_it(tmp_path: Path) -> None:
    from pipeline.data.model import DEFAULT_ACTIONS

    steps = ["- intent: greet", *(f"- action: {name}" for name in DEFAULT_ACTIONS if name != "action_listen")]
    assert problems_of(tmp_path / "a", {"data/stories.yml": stories(*steps)}) == []
    # not a default action in Rasa 3.6: `rasa data validate` fails on it unless the domain lists it
    late = stories("- intent: greet", "- action: action_send_text", "- action: action_validate_slot_mappings")
    assert problems_of(tmp_path / "b", {"data/stories.yml": late}) == [
        ("error", "unknown-action", "data/stories.yml:5"),
        ("error", "unknown-action", "data/stories.yml:6"),
    ]


@pytest.mark.parametrize(
    ("domain", "line", "fragment"),
    [
        pytest.param(DOMAIN.replace("  - city\n", "  - city\n  - city\n"), 7, "entity 'city' is listed twice", id="entity"),
        pytest.param(DOMAIN + "actions:\n  - action_a\n  - action_b: {send_domain: true}\n  - action_a\n", 22,
                     "action 'action_a' is listed twice under 'actions:' (first on line 20)", id="action"),
    ],
)
def test_duplicate_entities_and_actions_are_errors(tmp_path: Path, domain: str, line: int, fragment: str) -> None:
    """Rasa: InvalidDomain "Duplicate entities/actions in domain"."""
    (error,) = load_errors(tmp_path, {"domain.yml": domain})
    assert error.location == Location("domain.yml", line) and fragment in error.message


def test_response_without_variations_is_a_warning(tmp_path: Path) -> None:
    """Rasa accepts ``utter_bye: []``; a null response is an error in both."""
    project, warnings = load(tmp_path, {"domain.yml": DOMAIN.replace("  utter_bye:\n    - text: Bye!\n", "  utter_bye: []\n")})
    assert [str(w.location) for w in warnings] == ["domain.yml:17"] and "utter_bye" in project.domain.responses
    (error,) = load_errors(tmp_path / "null", {"domain.yml": DOMAIN.replace("  utter_bye:\n    - text: Bye!\n", "  utter_bye:\n")})
    assert error.location == Location("domain.yml", 17)


def test_dialogue_training_accepts_a_default_loop_action(tmp_path: Path) -> None:
    """What validation accepts, the dialogue trainer's own check accepts too (the rules example bot)."""
    from pipeline.errors import TrainingError
    from pipeline.training.core.stories import check_story_data, expand_stories

    rule = stories("- intent: nlu_fallback", "- action: action_two_stage_fallback",
                   "- active_loop: action_two_stage_fallback", key="rules")
    project, _ = load(tmp_path, {"data/rules.yml": rule})
    spec = DomainSpec.from_domain(project.domain)
    check_story_data(expand_stories(project.stories).trajectories, project.domain, spec)
    bad, _ = load(tmp_path / "bad", {"data/rules.yml": rule.replace("active_loop: action_two", "active_loop: two")})
    with pytest.raises(TrainingError, match="active_loop 'two_stage_fallback' is not a form in the domain"):
        check_story_data(expand_stories(bad.stories).trajectories, bad.domain, spec)


def test_bool_and_float_values_rasa_cannot_read_are_warnings_and_train_as_unset(tmp_path: Path) -> None:
    """Rasa validates and trains these; its featuriser reads them as "not set"."""
    from pipeline.training.core.stories import check_story_data, expand_stories

    domain = DOMAIN.replace(
        "slots:\n", "slots:\n  ok:\n    type: bool\n    mappings:\n    - type: custom\n"
        "  n:\n    type: float\n    mappings:\n    - type: custom\n", 1
    )
    story = stories("- intent: greet", '- slot_was_set:\n    - ok: "maybe"\n    - n: ten',
                    '- slot_was_set:\n    - ok: "TRUE"\n    - n: "2.5"\n    - ok: 1', "- action: utter_greet")
    assert problems_of(tmp_path, {"domain.yml": domain, "data/stories.yml": story}) == [
        ("warning", "slot-value", "data/stories.yml:5"),
        ("warning", "slot-value", "data/stories.yml:5"),
    ]
    project, _ = load(tmp_path, {"domain.yml": domain, "data/stories.yml": story})
    spec = DomainSpec.from_domain(project.domain)
    check_story_data(expand_stories(project.stories).trajectories, project.domain, spec)
    assert spec.slot("ok").featurize("maybe") == spec.slot("ok").featurize(None)  # type: ignore[union-attr]
    assert spec.slot("n").featurize("ten") == spec.slot("n").featurize(None)  # type: ignore[union-attr]


def test_names_declared_in_two_domain_files_are_warnings(tmp_path: Path) -> None:
    """Rasa: "The following duplicated intents have been found across multiple domain files" (a warning)."""
    project, warnings = load(tmp_path, {
        "domain.yml": None,
        "domain/a.yml": DOMAIN,
        "domain/b.yml": 'version: "3.1"\nintents:\n  - greet\nresponses:\n  utter_bye:\n  - text: Ciao!\n',
    })
    assert sorted(str(w.location) for w in warnings) == ["domain/b.yml", "domain/b.yml:3"]
    assert any("intent 'greet' is declared in more than one domain file (first in domain/a.yml:3)" in w.message
               for w in warnings)
    assert project.domain.responses["utter_bye"][0]["text"] == "Bye!"


def test_unknown_keys_in_a_json_annotation_are_ignored_with_a_warning(tmp_path: Path) -> None:
    """Rasa's entity parser keeps the entity and ignores other keys; a JSON error stays an error in both."""
    nlu = 'nlu:\n- intent: bye\n  examples: |\n    - to [Rome]{"entity": "city", "confidence": 1}\n'
    project, warnings = load(tmp_path, {"data/more.yml": nlu})
    (warning,) = warnings
    assert str(warning.location) == "data/more.yml:4" and "confidence" in warning.message
    (rome,) = [e for e in project.nlu.examples if e.text == "to Rome"]
    assert [(s.entity, s.value) for s in rome.entities] == [("city", "Rome")]


def test_slot_written_by_name_only_takes_rasas_value_for_its_type(tmp_path: Path) -> None:
    """Rasa 3.6 (``YAMLStoryReader._slot_default_value``, checked with Rasa itself): a text slot
    is ``"filled"``, a list slot ``["filled"]``, any other type empty (``None``) with a warning."""
    domain = DOMAIN.replace(
        "slots:\n",
        "slots:\n  name: {type: text, mappings: [{type: custom}]}\n"
        "  items: {type: list, mappings: [{type: custom}]}\n"
        "  confirmed: {type: bool, mappings: [{type: custom}]}\n",
    )
    data = stories("- intent: greet", "- slot_was_set: [name, items, confirmed, size]", "- action: utter_greet")
    project, warnings = load(tmp_path, {"domain.yml": domain, "data/stories.yml": data})
    slot_step = project.stories[0].steps[1]
    assert dict(slot_step.slots) == {"name": "filled", "items": ("filled",), "confirmed": None, "size": None}
    bare = sorted((p.message.split("'")[1], str(p.location)) for p in warnings if p.code == "slot-value")
    assert bare == [("confirmed", "data/stories.yml:5"), ("size", "data/stories.yml:5")]


@pytest.mark.parametrize("key", ["stories", "rules"])
def test_intent_written_with_a_leading_slash_is_read_without_it_and_warned(tmp_path: Path, key: str) -> None:
    """Rasa 3.6: "User intent '/greet' starts with '/'. This is not required." and drops the '/'."""
    story = stories("- intent: /greet", "- action: utter_greet", key=key)
    project, warnings = load(tmp_path, {f"data/{key}.yml": story})
    assert [(w.severity, str(w.location)) for w in warnings] == [("warning", f"data/{key}.yml:4")]
    assert "'/greet' starts with '/'" in warnings[0].message
    assert project.stories[0].steps[0].intent == "greet"
    assert [p for p in validate_project(project) if p.is_error] == []


def test_domain_store_entities_as_slots_false_is_accepted_and_changes_no_training_state(tmp_path: Path) -> None:
    """Rasa 3.6 reads the key but ``rasa train`` drops it (``DomainForCoreTrainingProvider`` prunes ``config``).

    Its core training trackers and a live conversation's ``action_extract_slots``
    fill ``from_entity`` slots either way; only ``rasa test`` trackers honour it
    (a documented difference: deltatrain tests with the states it trained on).
    """
    domain = DOMAIN.replace('version: "3.1"\n', 'version: "3.1"\nconfig:\n  store_entities_as_slots: false\n')
    story = stories("- intent: bye\n    entities:\n    - city: Rome", "- action: utter_bye")
    project, warnings = load(tmp_path, {"domain.yml": domain, "data/stories.yml": story})
    assert warnings == ()
    assert [p for p in validate_project(project) if p.is_error] == []
    spec = DomainSpec.from_domain(project.domain)
    assert [s.name for s in spec.slots_for_entities(project.stories[0].steps[0].entities)] == ["size"]


def test_action_restart_and_the_restart_event_need_no_domain_entry(tmp_path: Path) -> None:
    """Rasa's reader makes ``- action: restart`` a ``Restarted`` event; ``rasa data validate`` 3.6.21 has no error."""
    story = stories("- intent: greet", "- action: action_restart", "- action: restart", "- intent: greet",
                    "- action: utter_greet")
    assert [p for p in problems_of(tmp_path, {"data/stories.yml": story}) if p[0] == "error"] == []
    unknown = stories("- intent: greet", "- action: restarts")
    assert ("error", "unknown-action", "data/stories.yml:5") in problems_of(tmp_path, {"data/stories.yml": unknown})
