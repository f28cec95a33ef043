"""Test helper: write a project's files from inline YAML into a tmp dir."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping


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
