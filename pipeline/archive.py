"""Model archives: one ``.tar.gz`` per model, its layout, and safe reading.

Layout (names are constants here and nowhere else)::

    metadata.json           deltatrain version, model format, training time, mode, parent, ...
    fingerprint.json        the data fingerprint the model was trained on
    domain.yml              the domain the model serves
    nlu/                    the NLU model (pipeline.training.nlu)
    core/                   the dialogue model (pipeline.training.core), when trained
    nlu_training_data.yml   only with --persist-nlu-data
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from pipeline.errors import ArchiveError
from pipeline.fileperms import apply_umask

METADATA_FILE = "metadata.json"
FINGERPRINT_FILE = "fingerprint.json"
DOMAIN_FILE = "domain.yml"
NLU_DIR = "nlu"
CORE_DIR = "core"
NLU_DATA_FILE = "nlu_training_data.yml"
ARCHIVE_SUFFIX = ".tar.gz"
REQUIRED_MEMBERS = (METADATA_FILE, FINGERPRINT_FILE)


def archive_name(name: str) -> str:
    """``name`` with exactly one ``.tar.gz`` suffix."""
    return name if name.endswith(ARCHIVE_SUFFIX) else name + ARCHIVE_SUFFIX


def model_name_of(path: Path) -> str:
    """The model name of an archive path (file name without ``.tar.gz``)."""
    name = Path(path).name
    return name[: -len(ARCHIVE_SUFFIX)] if name.endswith(ARCHIVE_SUFFIX) else name


def write_json(path: Path, value: Any) -> None:
    """Write pretty, stable JSON."""
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def pack_archive(staging: Path, destination: Path) -> Path:
    """Pack a staging directory into ``destination`` atomically (temp file, then rename)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=ARCHIVE_SUFFIX, dir=destination.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            for path in sorted(staging.rglob("*")):
                arcname = path.relative_to(staging).as_posix()
                info = tar.gettarinfo(str(path), arcname)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if path.is_file():
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
        apply_umask(tmp)
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return destination


def _open(path: Path) -> tarfile.TarFile:
    if not Path(path).is_file():
        raise ArchiveError("model archive not found", location=str(path), hint="check the --model path")
    try:
        return tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"not a readable .tar.gz model archive ({exc})", location=str(path)) from exc


def _check_members(tar: tarfile.TarFile, path: Path) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for member in members:
        name = member.name
        if name.startswith("/") or os.path.isabs(name) or ".." in Path(name).parts:
            raise ArchiveError(f"unsafe path '{name}' in model archive", location=str(path),
                               hint="only use archives written by deltatrain")
        if not (member.isfile() or member.isdir()):
            raise ArchiveError(f"link or special file '{name}' in model archive", location=str(path),
                               hint="only use archives written by deltatrain")
    names = {m.name.rstrip("/") for m in members}
    missing = [m for m in REQUIRED_MEMBERS if m not in names]
    if missing:
        raise ArchiveError(f"model archive lacks {', '.join(missing)}", location=str(path),
                           hint="the file is not a deltatrain model archive (or it is incomplete)")
    return members


def read_archive_json(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metadata and fingerprint of an archive, without extracting the model."""
    with _open(path) as tar:
        _check_members(tar, path)
        result = []
        for member_name in (METADATA_FILE, FINGERPRINT_FILE):
            handle = tar.extractfile(member_name)
            if handle is None:
                raise ArchiveError(f"{member_name} is not a file", location=str(path))
            try:
                result.append(json.load(io.TextIOWrapper(handle, encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise ArchiveError(f"{member_name} is not valid JSON ({exc.msg})", location=str(path)) from exc
    return result[0], result[1]


def extract_archive(path: Path, destination: Path) -> Path:
    """Extract a validated archive into ``destination`` (refuses absolute paths, ``..`` and links)."""
    with _open(path) as tar:
        members = _check_members(tar, path)
        destination.mkdir(parents=True, exist_ok=True)
        tar.extractall(destination, members=members, filter="data")
    return destination


def find_latest_model(directory: Path) -> Path | None:
    """The newest model archive in ``directory`` by the training time recorded inside it."""
    directory = Path(directory)
    if directory.is_file():
        return directory
    if not directory.is_dir():
        return None
    best: tuple[str, str, Path] | None = None
    for candidate in directory.glob("*" + ARCHIVE_SUFFIX):
        try:
            metadata, _ = read_archive_json(candidate)
        except ArchiveError:
            continue
        key = (str(metadata.get("trained_at", "")), candidate.name, candidate)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None
