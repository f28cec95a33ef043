"""Read the project from the git commit being built, and report what changed.

CI must train what was committed, not stray files in the work tree; this
module gives the loader a :class:`GitCommitSource` over a commit's tree and
says which project files differ in the work tree.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from pipeline.errors import GitError


@dataclass(frozen=True)
class GitState:
    """Where the project sits in its repository, and at which commit."""

    repo_root: Path
    prefix: str  # project directory relative to the repository root ("" at the root)
    commit: str
    branch: str | None
    dirty_files: tuple[str, ...] = ()


_SYMLINK_MODE = 0o120000


class GitCommitSource:
    """A :class:`pipeline.data.loader.FileSource` over one commit's tree."""

    def __init__(self, repo: Any, commit: str, prefix: str = "") -> None:
        self._tree = repo.commit(commit).tree
        self._prefix = prefix.strip("/")

    def _full(self, path: str) -> str:
        joined = PurePosixPath(self._prefix, path) if self._prefix else PurePosixPath(path)
        return joined.as_posix().strip("/")

    def _get(self, path: str) -> Any:
        full = self._full(path)
        if full in ("", "."):
            return self._tree
        try:
            return self._tree / full
        except KeyError:
            return None

    def is_file(self, path: str) -> bool:
        item = self._get(path)
        return item is not None and item.type == "blob"

    def is_dir(self, path: str) -> bool:
        item = self._get(path)
        return item is not None and item.type == "tree"

    def list_files(self, path: str) -> list[str]:
        item = self._get(path)
        if item is None or item.type != "tree":
            return []
        base = len(self._prefix) + 1 if self._prefix else 0
        return sorted(blob.path[base:] for blob in item.traverse() if blob.type == "blob")

    def read_bytes(self, path: str) -> bytes:
        item = self._get(path)
        if item is None or item.type != "blob":
            raise FileNotFoundError(path)
        return item.data_stream.read()

    #: a link committed to the repository is a blob holding its target; it is never followed
    follows_links = False

    def link_target(self, path: str) -> str | None:
        """The target of the first committed symbolic link on ``path``, relative to the project root."""
        parts = PurePosixPath(path).parts
        for depth in range(1, len(parts) + 1):
            item = self._get(PurePosixPath(*parts[:depth]).as_posix())
            if item is None or item.type != "blob" or item.mode != _SYMLINK_MODE:
                continue
            target = item.data_stream.read().decode("utf-8", "replace")
            if target.startswith("/"):
                return target
            joined = posixpath.normpath(posixpath.join(*parts[: depth - 1], target) if depth > 1 else target)
            return joined
        return None


def open_repository(path: Path) -> Any | None:
    """The git repository containing ``path``, or None when it is not in one."""
    import git

    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def read_git_state(repo: Any, project_dir: Path) -> GitState:
    """Commit, branch and project files that differ from HEAD in the work tree."""
    import git

    try:
        repo_root = Path(repo.working_tree_dir).resolve()
        prefix = project_dir.resolve().relative_to(repo_root).as_posix()
        prefix = "" if prefix == "." else prefix
        commit = repo.head.commit.hexsha
    except ValueError as exc:
        raise GitError("the repository has no commits yet", location=str(project_dir),
                       hint="commit the training data first") from exc
    except git.GitError as exc:
        raise GitError(f"cannot read the git repository: {exc}", location=str(project_dir)) from exc
    try:
        branch: str | None = repo.active_branch.name
    except TypeError:
        branch = None  # detached HEAD, as in most CI checkouts
    changed = {d.a_path for d in repo.index.diff(None)} | {d.a_path for d in repo.index.diff("HEAD")}
    changed |= set(repo.untracked_files)
    dirty = tuple(sorted(p[len(prefix) + 1 :] if prefix else p for p in changed if not prefix or p.startswith(prefix + "/")))
    return GitState(repo_root, prefix, commit, branch, dirty)


@dataclass(frozen=True)
class ChangeReport:
    """Commits and files between the previous model's commit and HEAD."""

    base: str | None
    head: str
    commits: int = 0
    files: tuple[str, ...] = ()
    note: str | None = None
    messages: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "head": self.head, "commits": self.commits, "files": list(self.files),
                "note": self.note, "messages": list(self.messages)}


def compute_change_report(repo: Any, base: str | None, head: str, prefix: str, paths: Sequence[str]) -> ChangeReport:
    """What changed in the project's files from ``base`` to ``head``."""
    import git

    if not base:
        return ChangeReport(None, head, note="the previous model records no git commit")
    try:
        base_commit = repo.commit(base)
    except (git.BadName, ValueError, git.GitCommandError):
        return ChangeReport(base, head, note=f"commit {base[:10]} of the previous model is not in this clone (shallow clone?)")
    head_commit = repo.commit(head)
    roots = [str(PurePosixPath(prefix, p)) if prefix else p for p in paths]
    files = sorted(
        d.b_path or d.a_path
        for d in base_commit.diff(head_commit)
        if any((d.b_path or d.a_path) == r or (d.b_path or d.a_path).startswith(r.rstrip("/") + "/") for r in roots)
    )
    commits = list(repo.iter_commits(f"{base}..{head}"))
    return ChangeReport(base, head, len(commits), tuple(files),
                        messages=tuple(c.summary for c in commits[:20]))
