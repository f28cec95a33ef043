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

import json
import os
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

from pipeline.errors import ArchiveError
from pipeline.fileperms import apply_umask
from pipeline.limits import DEFAULT_LIMITS, Limits, format_bytes
from pipeline.sidefiles import SideFile, SideFileError, decode_side_file

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
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


#: What tarfile/gzip raise on a truncated, corrupt or non-gzip file.
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _unreadable(path: Path, exc: BaseException) -> ArchiveError:
    detail = str(exc) or type(exc).__name__
    return ArchiveError(
        f"not a readable .tar.gz model archive: {detail}",
        location=str(path),
        hint="the file is truncated or damaged; train the model again (or restore the archive)",
    )


def _check_members(tar: tarfile.TarFile, path: Path, limits: Limits) -> list[tarfile.TarInfo]:
    """Read the member headers one by one, refusing unsafe members and anything over the limits.

    Headers are read lazily, so a bomb is refused as soon as the running total passes a
    limit, without decompressing the rest.
    """
    members: list[tarfile.TarInfo] = []
    total = 0
    try:
        while (member := tar.next()) is not None:
            members.append(member)
            if len(members) > limits.max_members:
                raise ArchiveError(
                    f"model archive has more than {limits.max_members} members",
                    location=str(path),
                    hint="only use archives written by deltatrain (the limit guards against archive bombs)",
                )
            name = member.name
            if name.startswith("/") or os.path.isabs(name) or ".." in Path(name).parts:
                raise ArchiveError(f"unsafe path '{name}' in model archive", location=str(path),
                                   hint="only use archives written by deltatrain")
            if not (member.isfile() or member.isdir()) or member.issparse():
                raise ArchiveError(f"link or special file '{name}' in model archive", location=str(path),
                                   hint="only use archives written by deltatrain")
            total += member.size
            if total > limits.max_extracted_bytes:
                raise ArchiveError(
                    f"model archive expands to more than {format_bytes(limits.max_extracted_bytes)}"
                    f" (member '{name}' alone is {format_bytes(member.size)})",
                    location=str(path),
                    hint="only use archives written by deltatrain (the limit guards against archive bombs)",
                )
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    names = {m.name.rstrip("/") for m in members}
    missing = [m for m in REQUIRED_MEMBERS if m not in names]
    if missing:
        raise ArchiveError(f"model archive lacks {', '.join(missing)}", location=str(path),
                           hint="the file is not a deltatrain model archive (or it is incomplete)")
    return members


def read_archive_json(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metadata and fingerprint of an archive, checked, without extracting the model."""
    with _open(path) as tar:
        members = {m.name.rstrip("/"): m for m in _check_members(tar, path, limits)}
        result = []
        for kind in (SideFile.METADATA, SideFile.FINGERPRINT):
            member = members[kind.value]
            if not member.isfile():
                raise ArchiveError(f"{kind.value} is not a file", location=str(path))
            if member.size > limits.max_json_bytes:
                raise ArchiveError(
                    f"{kind.value} is {format_bytes(member.size)}, more than the limit of"
                    f" {format_bytes(limits.max_json_bytes)}",
                    location=f"{path}:{kind.value}",
                    hint="only use archives written by deltatrain",
                )
            try:
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                result.append(decode_side_file(kind, data, max_bytes=limits.max_json_bytes))
            except _READ_ERRORS as exc:
                raise _unreadable(path, exc) from exc
            except SideFileError as exc:
                raise ArchiveError(
                    str(exc), location=f"{path}:{kind.value}",
                    hint="the archive's side file was edited or damaged; train the model again",
                ) from exc
    return result[0], result[1]


def extract_archive(path: Path, destination: Path, *, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Extract a validated archive into ``destination`` (refuses absolute paths, ``..``, links and bombs)."""
    with _open(path) as tar:
        members = _check_members(tar, path, limits)
        try:
            destination.mkdir(parents=True, exist_ok=True)
            tar.extractall(destination, members=members, filter="data")
        except _READ_ERRORS as exc:
            raise _unreadable(path, exc) from exc
    return destination


def find_latest_model(
    directory: Path, *, skipped: list[ArchiveError] | None = None
) -> Path | None:
    """The newest model archive in ``directory`` by the training time recorded inside it.

    Unreadable archives (truncated, unsafe, malformed side files) are passed over; their
    errors are appended to ``skipped`` so the caller can warn about them.
    """
    directory = Path(directory)
    if directory.is_file():
        return directory
    if not directory.is_dir():
        return None
    best: tuple[str, str, Path] | None = None
    for candidate in directory.glob("*" + ARCHIVE_SUFFIX):
        try:
            metadata, _ = read_archive_json(candidate)
        except ArchiveError as exc:
            if skipped is not None:
                skipped.append(exc)
            continue
        key = (str(metadata.get("trained_at", "")), candidate.name, candidate)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None
