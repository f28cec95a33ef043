"""Model archives: layout, safe extraction, latest model by recorded training time."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from pipeline.archive import (
    archive_name,
    extract_archive,
    find_latest_model,
    model_name_of,
    pack_archive,
    read_archive_json,
)
from pipeline.errors import ArchiveError


def _make_archive(path: Path, members: dict[str, bytes], *, link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path


GOOD = {"metadata.json": b'{"trained_at": "2026-01-01T00:00:00+00:00"}', "fingerprint.json": b"{}"}


@pytest.mark.parametrize("name, expected", [("m", "m.tar.gz"), ("m.tar.gz", "m.tar.gz")], ids=["plain", "suffixed"])
def test_archive_name_has_one_suffix(name: str, expected: str) -> None:
    assert archive_name(name) == expected
    assert model_name_of(Path(archive_name(name))) == "m"


def test_pack_and_read_round_trip(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    (staging / "nlu").mkdir(parents=True)
    (staging / "nlu" / "weights.npz").write_bytes(b"\x00\x01")
    (staging / "metadata.json").write_text(json.dumps({"name": "x", "trained_at": "t"}))
    (staging / "fingerprint.json").write_text(json.dumps({"sections": {"a": "b"}}))
    archive = pack_archive(staging, tmp_path / "out" / "x.tar.gz")
    metadata, fingerprint = read_archive_json(archive)
    assert metadata["name"] == "x" and fingerprint["sections"] == {"a": "b"}
    extracted = extract_archive(archive, tmp_path / "extracted")
    assert (extracted / "nlu" / "weights.npz").read_bytes() == b"\x00\x01"
    assert not list((tmp_path / "out").glob(".tmp-*"))


@pytest.mark.parametrize(
    "members, link, fragment",
    [
        ({**GOOD, "../evil": b"x"}, None, "unsafe path"),
        ({**GOOD, "/abs/evil": b"x"}, None, "unsafe path"),
        (GOOD, "nlu/link", "link or special file"),
        ({"fingerprint.json": b"{}"}, None, "lacks metadata.json"),
    ],
    ids=["dotdot", "absolute", "symlink", "missing-metadata"],
)
def test_unsafe_or_incomplete_archives_are_refused(tmp_path: Path, members: dict, link: str | None, fragment: str) -> None:
    archive = _make_archive(tmp_path / "bad.tar.gz", members, link=link)
    with pytest.raises(ArchiveError, match=fragment):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_not_an_archive_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(ArchiveError, match="not a readable"):
        read_archive_json(path)


def test_latest_model_is_chosen_by_recorded_training_time(tmp_path: Path) -> None:
    older = _make_archive(tmp_path / "zzz.tar.gz", {**GOOD, "metadata.json": b'{"trained_at": "2026-01-01T00:00:00"}'})
    newer = _make_archive(tmp_path / "aaa.tar.gz", {**GOOD, "metadata.json": b'{"trained_at": "2026-02-01T00:00:00"}'})
    (tmp_path / "broken.tar.gz").write_bytes(b"junk")
    # file times say the opposite of the recorded training times
    import os

    os.utime(newer, (1, 1))
    assert find_latest_model(tmp_path) == newer
    assert find_latest_model(older) == older
    assert find_latest_model(tmp_path / "missing") is None
