"""pipeline.data.yamlio: hostile YAML (alias bombs, deep nesting) is refused quickly with file:line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.data.loader import DirectorySource, ProjectPaths, load_project
from pipeline.data.yamlio import MAX_ALIAS_VALUES, MAX_DEPTH, YamlProblem, parse_yaml
from pipeline.errors import DataError, Location
from tests.helpers import write_project


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" document: each level repeats the previous one ``width`` times (width**levels values)."""
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def parse_error(text: str) -> YamlProblem:
    with pytest.raises(YamlProblem) as caught:
        parse_yaml(text.encode(), "data/nlu.yml")
    return caught.value


def test_alias_bomb_is_refused_by_the_limit_within_a_second() -> None:
    text = alias_bomb()
    assert len(text) < 2_000  # a small file ...
    started = time.perf_counter()
    problem = parse_error(text).problem
    elapsed = time.perf_counter() - started
    # ... that would expand to 9**9 (387 million) values; the limit stops it at the level that crosses it
    assert elapsed < 1.0
    assert problem.is_error and problem.code == "yaml"
    assert f"more than {MAX_ALIAS_VALUES} values" in problem.message and "'*l4'" in problem.message
    # aliases in l1..l4 add 74718 values; l5's first alias (line 6, column 10) adds 66430 more
    assert problem.location == Location("data/nlu.yml", 6, 10)
    assert problem.hint


def test_aliases_below_the_limit_are_read_as_usual() -> None:
    doc = parse_yaml(alias_bomb(levels=3).encode(), "x.yml")
    assert len(doc["l2"]) == 9 and doc["l2"][0] == doc["l1"] and doc["l1"][0] == ["lol"] * 9
    merged = parse_yaml(b"base: &b {type: text}\nslot: {<<: *b, influence_conversation: false}\n", "x.yml")
    assert merged["slot"] == {"type": "text", "influence_conversation": False}


def test_alias_inside_its_own_anchor_is_refused() -> None:
    problem = parse_error("a: &a\n  - x\n  - *a\n").problem
    assert "'*a' refers to the collection that contains it" in problem.message
    assert problem.location == Location("data/nlu.yml", 3, 5)


@pytest.mark.parametrize(
    "text",
    [
        # 200 KB of brackets: PyYAML's scanner is quadratic in the flow depth, so the limit applies there
        pytest.param("nlu: " + "[" * 100_000 + "]" * 100_000 + "\n", id="flow-sequences"),
        pytest.param("nlu: " + "{a: " * 50_000 + "x" + "}" * 50_000 + "\n", id="flow-mappings"),
        pytest.param("".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "v\n", id="block-mappings"),
    ],
)
def test_deep_nesting_is_refused_without_recursion_error(text: str) -> None:
    started = time.perf_counter()
    problem = parse_error(text).problem
    assert time.perf_counter() - started < 1.0
    assert f"nested more than {MAX_DEPTH} levels" in problem.message
    assert problem.location is not None and problem.location.file == "data/nlu.yml"
    assert problem.location.line is not None


def test_nesting_up_to_the_limit_is_allowed() -> None:
    depth = MAX_DEPTH - 1  # the document's own mapping is one level
    doc = parse_yaml(("k: " + "[" * depth + "]" * depth + "\n").encode(), "x.yml")
    inner = doc["k"]
    for _ in range(depth - 1):
        inner = inner[0]
    assert inner == []


def test_bomb_in_the_domain_stops_loading_with_file_and_line(tmp_path: Path) -> None:
    bomb = alias_bomb() + "responses:\n  utter_hi:\n  - text: hi\n    custom: {payload: *l8}\n"
    root = write_project(
        tmp_path,
        {"domain.yml": bomb, "data/nlu.yml": "nlu:\n- intent: greet\n  examples: |\n    - hi\n"},
    )
    started = time.perf_counter()
    with pytest.raises(DataError) as caught:
        load_project(DirectorySource(root), ProjectPaths())
    assert time.perf_counter() - started < 1.0
    (error,) = [p for p in caught.value.problems if p.is_error]
    assert str(error.location) == "domain.yml:6:10"


def test_data_validate_refuses_the_bomb_quickly_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.cli import main

    bomb = alias_bomb() + "responses:\n  utter_hi:\n  - text: hi\n    custom: {payload: *l8}\n"
    monkeypatch.chdir(write_project(tmp_path, {"domain.yml": bomb, "data/nlu.yml": "nlu: " + "[" * 500 + "]" * 500}))
    started = time.perf_counter()
    assert main(["data", "validate"], environ={}) == 1
    assert time.perf_counter() - started < 1.0
    output = capsys.readouterr()
    text = output.out + output.err
    assert "domain.yml:6:10: error: YAML aliases expand to more than" in text
    assert "data/nlu.yml:1:" in text and "nested more than" in text and "Traceback" not in text
