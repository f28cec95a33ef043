"""Find and read a Rasa project's files (the I/O edge of the data layer).

Files are read through a :class:`FileSource`, so the same loader reads a
working directory or a git commit (see :mod:`pipeline.gitrepo`). Default paths
are Rasa's: ``config.yml``, ``domain.yml`` or a ``domain/`` directory, ``data/``
searched recursively, ``tests/`` for test stories and held-out NLU data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, Sequence

from pipeline.data.config import read_config
from pipeline.data.model import Config, Domain, NluData, Project, Story, freeze
from pipeline.data.readers import (
    Collector,
    check_training_keys,
    check_version,
    duplicates_across,
    is_domain_document,
    is_training_document,
    merge_domains,
    read_domain,
    read_nlu,
    read_responses,
    read_stories,
)
from pipeline.data.yamlio import YamlProblem, YMap, parse_yaml
from pipeline.errors import DataError, Location, Problem

YAML_SUFFIXES = (".yml", ".yaml")


class FileSource(Protocol):
    """Read-only access to a project's files by POSIX path relative to its root.

    ``link_target`` tells where a path leads when it, or a folder above it, is
    a symbolic link: a POSIX path relative to the root, or one starting with
    ``/`` or ``../`` when the link leaves the project. ``follows_links`` says
    whether reading through a link inside the project works.
    """

    follows_links: bool

    def is_file(self, path: str) -> bool: ...
    def is_dir(self, path: str) -> bool: ...
    def list_files(self, path: str) -> list[str]: ...
    def read_bytes(self, path: str) -> bytes: ...
    def link_target(self, path: str) -> str | None: ...


@dataclass(frozen=True)
class DirectorySource:
    """Files of a directory on disk."""

    root: Path

    def _abs(self, path: str) -> Path:
        return self.root / path

    def is_file(self, path: str) -> bool:
        return self._abs(path).is_file()

    def is_dir(self, path: str) -> bool:
        return self._abs(path).is_dir()

    def list_files(self, path: str) -> list[str]:
        base = self._abs(path)
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                full = Path(dirpath, name)
                try:
                    found.append(full.relative_to(self.root).as_posix())
                except ValueError:  # an absolute path outside the root
                    found.append(full.as_posix())
        return found

    def read_bytes(self, path: str) -> bytes:
        return self._abs(path).read_bytes()

    follows_links = True

    def link_target(self, path: str) -> str | None:
        """Where ``path`` leads if a symbolic link on the way changes it (see :class:`FileSource`)."""
        full = Path(os.path.abspath(self._abs(path)))
        root = Path(os.path.abspath(self.root))
        try:
            resolved = full.resolve()
            real_root = root.resolve()
        except (OSError, RuntimeError):  # a link loop
            return str(full)
        if resolved == full or not _is_within(full, root):
            return None  # no link involved, or a path the user gave outside the project on purpose
        if _is_within(resolved, real_root):
            return resolved.relative_to(real_root).as_posix()
        return resolved.as_posix()


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def is_outside(target: str) -> bool:
    """Whether a :meth:`FileSource.link_target` result leaves the project."""
    return target.startswith("/") or target == ".." or target.startswith("../")


@dataclass(frozen=True)
class ProjectPaths:
    """Where a project's parts are, relative to the source root (Rasa defaults)."""

    data: tuple[str, ...] = ("data",)
    domain: str | None = None  # None: domain.yml, domain.yaml or domain/; "": no domain
    config: str = "config.yml"
    tests: tuple[str, ...] = ("tests",)
    #: leave out custom components and those deltatrain cannot run (a warning), instead of an error
    ignore_unknown_components: bool = False


def load_project(source: FileSource, paths: ProjectPaths = ProjectPaths()) -> tuple[Project, tuple[Problem, ...]]:
    """Read every part of a project; raise DataError listing all errors, else return warnings too."""
    problems: list[Problem] = []
    config = _load_config(source, paths.config, problems, paths.ignore_unknown_components)
    domain, has_domain, domain_files = _load_domain(source, paths.domain, problems)
    data_files = [f for f in _yaml_files(source, paths.data, problems, required=True) if f not in domain_files]
    nlu, stories, responses = _load_training_files(source, data_files, problems, kind="train")
    if responses:  # Rasa merges responses kept with the training data (retrieval intents) into the domain
        domain = merge_domains([domain, Domain(responses=freeze(responses))])
    test_files = _yaml_files(source, paths.tests, problems, required=False)
    test_nlu, test_stories, _ = _load_training_files(source, test_files, problems, kind="test")
    if not data_files and not any(p.is_error for p in problems):
        problems.append(
            Problem(
                "error",
                f"no training data found under {', '.join(paths.data)}",
                Location(paths.data[0]),
                "put nlu/stories/rules YAML files in data/ or pass --data",
                code="missing",
            )
        )
    if any(p.is_error for p in problems):
        raise DataError(problems)
    project = Project(
        config=config,
        domain=domain,
        nlu=nlu,
        stories=tuple(stories),
        test_nlu=test_nlu,
        test_stories=tuple(test_stories),
        has_domain=has_domain,
        files=tuple(sorted({paths.config, *domain_files, *data_files, *test_files})),
    )
    return project, tuple(problems)


def read_nlu_files(paths: Sequence[Path]) -> NluData:
    """Read NLU data from YAML files on disk (used by benchmarks and tests)."""
    problems: list[Problem] = []
    nlu = NluData()
    for path in paths:
        source = DirectorySource(Path(path).parent)
        part, _, _ = _load_training_files(source, [Path(path).name], problems, kind="train")
        nlu = nlu.merge(part)
    if any(p.is_error for p in problems):
        raise DataError(problems)
    return nlu


def _link_problem(source: FileSource, path: str) -> Problem | None:
    """An error when ``path`` is a symbolic link deltatrain must not follow."""
    target = source.link_target(path)
    if target is None:
        return None
    if is_outside(target):
        return Problem(
            "error",
            f"'{path}' is a symbolic link that leads outside the project (to {target}); it is not read",
            Location(path),
            "copy the files into the project (or commit them there) instead of linking to them",
            code="symlink",
        )
    if not source.follows_links:
        return Problem(
            "error",
            f"'{path}' is a symbolic link (to {target}); links are not followed when reading a git commit",
            Location(path),
            f"commit the files under '{path}' itself instead of a link to them",
            code="symlink",
        )
    return None


def _safe_paths(source: FileSource, paths: Sequence[str], problems: list[Problem]) -> list[str]:
    """``paths`` without the symbolic links that must not be followed (each reported once)."""
    kept = []
    for path in paths:
        problem = _link_problem(source, path)
        if problem is None:
            kept.append(path)
        elif problem not in problems:
            problems.append(problem)
    return kept


def _parse(source: FileSource, path: str, problems: list[Problem]) -> Any:
    try:
        return parse_yaml(source.read_bytes(path), path)
    except YamlProblem as exc:
        problems.append(exc.problem)
        return None
    except OSError as exc:
        problems.append(Problem("error", f"cannot read file: {exc.strerror}", Location(path), code="io"))
        return None


def _load_config(source: FileSource, path: str, problems: list[Problem], ignore_unknown: bool = False) -> Config:
    out = Collector(path)
    if not _safe_paths(source, [path], problems):
        return read_config(None, out)
    if not source.is_file(path):
        problems.append(
            Problem("warning", "no config file; Rasa's default pipeline and policies are used", Location(path),
                    "add a config.yml to pin the pipeline", code="missing")
        )
        return read_config(None, out)
    doc = _parse(source, path, problems)
    config = read_config(doc, out, ignore_unknown_components=ignore_unknown)
    problems.extend(out.problems)
    for note in config.notes:
        file, _, rest = note.partition(":")
        line, _, message = rest.partition(": ")
        problems.append(
            Problem(
                "warning",
                message,
                Location(file, int(line) if line.isdigit() else None),
                "use a component deltatrain implements in its place to silence this warning",
                code="config",
            )
        )
    return config


def _load_domain(
    source: FileSource, path: str | None, problems: list[Problem]
) -> tuple[Domain, bool, list[str]]:
    if path == "":  # explicitly no domain
        return Domain(), False, []
    candidates = [path] if path else ["domain.yml", "domain.yaml", "domain"]
    for candidate in _safe_paths(source, candidates, problems):
        if source.is_file(candidate):
            files = [candidate]
        elif source.is_dir(candidate):
            files = _safe_paths(
                source, [f for f in source.list_files(candidate) if f.endswith(YAML_SUFFIXES)], problems
            )
        else:
            continue
        parts = []
        for file in files:
            doc = _parse(source, file, problems)
            if doc is None:
                continue
            out = Collector(file)
            if not isinstance(doc, YMap):
                out.error("a domain file must be a mapping (intents:, responses:, ...)", 1)
            else:
                if check_version(doc, out):
                    parts.append(read_domain(doc, out))
            problems.extend(out.problems)
        domain = merge_domains(parts)
        problems.extend(duplicates_across(parts))
        if domain.is_empty and not any(p.is_error and p.location and p.location.file in files for p in problems):
            problems.append(
                Problem(
                    "error",
                    f"the domain {'file' if len(files) == 1 else 'directory'} {candidate} is empty: it declares no "
                    "intents, entities, slots, responses, actions or forms",
                    Location(files[0] if len(files) == 1 else candidate, 1 if len(files) == 1 else None),
                    f"declare the assistant's intents and responses in {candidate}, or delete it to train an "
                    "NLU-only model (Rasa refuses an empty domain as well)",
                    code="empty-domain",
                )
            )
        return domain, True, files
    if path:
        problems.append(Problem("error", "domain file not found", Location(path), "check the --domain path", code="missing"))
    return Domain(), False, []


def _yaml_files(source: FileSource, roots: Sequence[str], problems: list[Problem], *, required: bool) -> list[str]:
    files: list[str] = []
    for root in _safe_paths(source, roots, problems):
        if source.is_file(root):
            files.append(root)
        elif source.is_dir(root):
            files.extend(f for f in source.list_files(root) if f.endswith(YAML_SUFFIXES))
        elif required and root != "data":
            problems.append(Problem("error", "training data path not found", Location(root), "check the --data path", code="missing"))
    return _safe_paths(source, files, problems)


def _load_training_files(
    source: FileSource, files: Sequence[str], problems: list[Problem], *, kind: str
) -> tuple[NluData, list[Story], dict[str, Any]]:
    """NLU data, stories/rules and the ``responses:`` found in training data files."""
    nlu = NluData()
    stories: list[Story] = []
    responses: dict[str, Any] = {}
    for file in files:
        doc = _parse(source, file, problems)
        if doc is None:
            continue
        out = Collector(file)
        train = kind == "train"
        if not isinstance(doc, YMap):
            out.error(f"expected a mapping with nlu:, stories: or rules:, got {type(doc).__name__}", 1)
        elif is_training_document(doc) or (train and "responses" in doc):
            if not check_version(doc, out):
                problems.extend(out.problems)
                continue
            check_training_keys(doc, out)
            if "nlu" in doc:
                nlu = nlu.merge(read_nlu(doc, out, partial(_read_side, source, file)))
            for key in ("stories", "rules"):
                if key in doc:
                    stories.extend(read_stories(doc, key, out, kind="test" if kind == "test" else key))
            if train and "responses" in doc:
                for name, value in read_responses(doc, out).items():
                    responses.setdefault(name, value)
        elif not is_domain_document(doc) and train:
            keys = ", ".join(str(k) for k in doc.keys()) or "none"
            out.warning(
                f"file has none of the keys nlu, stories, rules (found: {keys}) and is ignored",
                1,
                "training data files start with 'nlu:', 'stories:' or 'rules:'",
            )
        problems.extend(out.problems)
    return nlu, stories, responses


def _read_side(source: FileSource, file: str, side: str) -> str | None:
    for candidate in (side, str(PurePosixPath(file).parent / side)):
        if source.is_file(candidate) and _link_problem(source, candidate) is None:
            try:
                return source.read_bytes(candidate).decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None
