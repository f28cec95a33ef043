"""Test helper: write a project's files from inline YAML into a tmp dir."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import git


def write_project(tmp_path: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``{relative path: content}`` under ``tmp_path``; return ``tmp_path``.

    Text is dedented (so YAML can be indented inside the test) and a leading
    newline is dropped, so line 1 of the file is the first line after the
    opening quotes. Bytes are written as they are (for encoding tests).
    Parent directories are created as needed.
    """
    for relative, content in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            text = textwrap.dedent(content)
            if text.startswith("\n"):
                text = text[1:]
            path.write_text(text, encoding="utf-8")
    return tmp_path


def copy_into_git_repo(source: Path, work: Path) -> "git.Repo":
    """Copy a project to ``work`` and commit it in a new git repository (store/models ignored)."""
    import shutil

    import git

    shutil.copytree(source, work)
    (work / ".gitignore").write_text(".deltatrain/\nmodels/\nresults/\n")
    repo = git.Repo.init(work)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "test")
        cfg.set_value("user", "email", "test@example.invalid")
    repo.git.add(A=True)
    repo.index.commit("initial data")
    return repo
