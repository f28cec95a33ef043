"""YAML reading that remembers where every value came from.

Mappings become :class:`YMap` and sequences :class:`YSeq`, plain ``dict`` and
``list`` subclasses that also carry the 1-based line of the node and of each
key / item, so every later error can name ``file:line``. Booleans follow YAML
1.2 (only ``true``/``false``), as Rasa's reader does: an intent called ``yes``
stays a string.

Hostile input is refused while the file is composed, before anything is built
from it: aliases may add at most :data:`MAX_ALIAS_VALUES` values to a file (a
"billion laughs" bomb of a few KB would otherwise expand to gigabytes), and
collections may nest at most :data:`MAX_DEPTH` levels deep (deeper nesting
would overflow Python's stack). Both are reported with file and line.
"""

from __future__ import annotations

import re
from typing import Any, cast

import yaml

from pipeline.errors import Location, Problem


class YMap(dict):  # type: ignore[type-arg]
    """A mapping with line numbers: ``line``, ``key_line(k)``, ``value_line(k)``."""

    line: int = 0
    column: int = 0
    _key_lines: dict[Any, int]
    _value_lines: dict[Any, tuple[int, str | None]]

    def key_line(self, key: Any) -> int:
        return self._key_lines.get(key, self.line)

    def value_line(self, key: Any) -> int:
        return self._value_lines.get(key, (self.key_line(key), None))[0]

    def value_style(self, key: Any) -> str | None:
        return self._value_lines.get(key, (0, None))[1]


class YSeq(list):  # type: ignore[type-arg]
    """A sequence with line numbers: ``line`` and ``item_line(i)``."""

    line: int = 0
    _item_lines: list[int]

    def item_line(self, index: int) -> int:
        try:
            return self._item_lines[index]
        except IndexError:
            return self.line


#: Values that aliases (``*name``) may add to one file, counted as if expanded.
MAX_ALIAS_VALUES = 100_000
#: Levels of nested mappings/sequences allowed in one file (Rasa data needs fewer than 15).
MAX_DEPTH = 100


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _LimitExceeded(Exception):
    def __init__(self, message: str, hint: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.message, self.hint, self.mark = message, hint, mark


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, line-tracking containers and alias/depth limits."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_values = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values in it with aliases expanded, once composed

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        """Stop at the scanner already: PyYAML scans nested ``[[[...`` in quadratic time."""
        if self.flow_level >= MAX_DEPTH:
            raise _LimitExceeded(
                f"YAML nested more than {MAX_DEPTH} levels deep",
                "flatten the data; Rasa training data needs only a few levels of nesting",
                self.get_mark(),
            )
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node, counting its nesting depth and the values aliases add."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
            node = cast(yaml.Node, super().compose_node(parent, index))  # an alias always composes a node
            size = self._sizes.get(id(node))
            if size is None:  # anchored collection still being composed: it would contain itself
                raise _LimitExceeded(
                    f"alias '*{event.anchor}' refers to the collection that contains it",
                    "remove the alias; a value cannot contain itself",
                    event.start_mark,
                )
            self._alias_values += size
            if self._alias_values > MAX_ALIAS_VALUES:
                raise _LimitExceeded(
                    f"YAML aliases expand to more than {MAX_ALIAS_VALUES} values (at alias '*{event.anchor}')",
                    "write the values out instead of repeating anchors (&name) through aliases (*name)",
                    event.start_mark,
                )
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitExceeded(
                f"YAML nested more than {MAX_DEPTH} levels deep",
                "flatten the data; Rasa training data needs only a few levels of nesting",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        try:
            node = cast(yaml.Node, super().compose_node(parent, index))  # None only at the stream's end
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(child)] for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(key)] + self._sizes[id(value)] for key, value in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        return node


# YAML 1.2 core-schema booleans: drop the 1.1 yes/no/on/off resolver.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> YMap:
    loader.flatten_mapping(node)
    result = YMap()
    result.line = node.start_mark.line + 1
    result.column = node.start_mark.column + 1
    result._key_lines = {}
    result._value_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (list, dict)):
            key = str(key)
        if key in result._key_lines:
            raise _DuplicateKey(key, key_node.start_mark.line + 1, result._key_lines[key])
        result[key] = loader.construct_object(value_node, deep=True)
        result._key_lines[key] = key_node.start_mark.line + 1
        style = getattr(value_node, "style", None)
        result._value_lines[key] = (value_node.start_mark.line + 1, style)
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> YSeq:
    result = YSeq(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result._item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


class YamlProblem(Exception):
    """Reading a YAML file failed; ``problem`` says where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def parse_yaml(content: bytes, file: str) -> Any:
    """Parse YAML bytes into YMap/YSeq/scalars; raise :class:`YamlProblem` with file:line."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = content[: exc.start].count(b"\n") + 1
        raise YamlProblem(
            Problem(
                "error",
                f"file is not valid UTF-8 (byte 0x{content[exc.start]:02x} at offset {exc.start})",
                Location(file, bad_line),
                "save the file as UTF-8 (most editors: 'Save with encoding' → UTF-8)",
                code="encoding",
            )
        ) from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except _LimitExceeded as exc:
        raise YamlProblem(
            Problem(
                "error",
                exc.message,
                Location(file, exc.mark.line + 1, exc.mark.column + 1),
                exc.hint,
                code="yaml",
            )
        ) from exc
    except _DuplicateKey as exc:
        raise YamlProblem(
            Problem(
                "error",
                f"duplicate key '{exc.key}' (first defined on line {exc.first})",
                Location(file, exc.line),
                "merge the two entries into one; YAML keeps only one of them",
                code="yaml",
            )
        ) from exc
    except yaml.MarkedYAMLError as exc:
        lines = text.splitlines()
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and mark.line >= len(lines) and exc.context_mark is not None:
            mark = exc.context_mark  # "got <stream end>": point at what was left open, not past the file
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        what = exc.problem or "invalid YAML"
        context = ""
        if exc.context:
            started = exc.context_mark
            since = f" started on line {started.line + 1}" if started and started.line + 1 != line else ""
            context = f" ({exc.context}{since})"
        line_text = lines[line - 1] if line and line <= len(lines) else ""
        raise YamlProblem(
            Problem(
                "error",
                f"YAML syntax error: {what}{context}",
                Location(file, line, column),
                _yaml_hint(what, line_text),
                code="yaml",
            )
        ) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(Problem("error", f"YAML error: {exc}", Location(file), code="yaml")) from exc


def _yaml_hint(problem: str, line_text: str = "") -> str:
    indent = line_text[: len(line_text) - len(line_text.lstrip())]
    if "\t" in indent or "tab" in problem:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return "quote the value if it contains ': ' (for example text: \"a: b\"), or fix the indentation"
    if "expected <block end>" in problem or "did not find expected" in problem:
        return "check the indentation of this line against the lines above it"
    return "check the indentation and quoting around this line"
