"""Model archives: layout, safe extraction, latest model by recorded training time."""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
import time
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
from pipeline.limits import Limits


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


# ----------------------------------------------------------------- hostile archives

SMALL = Limits(max_extracted_bytes=1024 * 1024, max_members=20, max_json_bytes=4096)


def _bomb(path: Path, *, members: int, member_size: int) -> Path:
    """A real gzip bomb: ``members`` files of zeros (1 MiB of zeros gzips to about 1 KiB)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in GOOD.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        zeros = bytes(member_size)
        for index in range(members):
            info = tarfile.TarInfo(f"nlu/part-{index}.bin")
            info.size = member_size
            tar.addfile(info, io.BytesIO(zeros))
    return path


def test_a_bomb_is_refused_by_the_size_limit_before_anything_is_written(tmp_path: Path) -> None:
    archive = _bomb(tmp_path / "bomb.tar.gz", members=1, member_size=64 * 1024 * 1024)
    assert archive.stat().st_size < 200_000  # 64 MiB of zeros in well under 200 KB

    started = time.perf_counter()
    with pytest.raises(ArchiveError, match=r"expands to more than 1\.0 MiB \(member 'nlu/part-0.bin' alone is 64\.0 MiB\)"):
        extract_archive(archive, tmp_path / "out", limits=SMALL)
    assert time.perf_counter() - started < 1.0
    assert not (tmp_path / "out").exists()


def test_many_small_members_add_up_to_the_size_limit(tmp_path: Path) -> None:
    archive = _bomb(tmp_path / "bomb.tar.gz", members=8, member_size=200 * 1024)

    with pytest.raises(ArchiveError, match="expands to more than 1.0 MiB") as raised:
        read_archive_json(archive, limits=SMALL)
    assert raised.value.hint and "archive bombs" in raised.value.hint


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    archive = _bomb(tmp_path / "many.tar.gz", members=25, member_size=1)

    with pytest.raises(ArchiveError, match="more than 20 members"):
        extract_archive(archive, tmp_path / "out", limits=SMALL)


def test_an_oversized_side_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    archive = _make_archive(tmp_path / "big.tar.gz", {**GOOD, "metadata.json": b'{"pad": "' + b"x" * 5000 + b'"}'})

    with pytest.raises(ArchiveError, match=r"metadata.json is 4.9 KiB, more than the limit of 4.0 KiB"):
        read_archive_json(archive, limits=SMALL)


def test_default_limits_refuse_an_archive_that_expands_to_1_gib(tmp_path: Path) -> None:
    """The header of one 1 GiB member is enough: refused before its data is read."""
    path = tmp_path / "gib.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as raw:
        for name, data in GOOD.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            raw.write(info.tobuf(format=tarfile.GNU_FORMAT) + data.ljust(512, b"\0"))
        info = tarfile.TarInfo("nlu/huge.bin")
        info.size = 1024**3
        raw.write(info.tobuf(format=tarfile.GNU_FORMAT))
        raw.write(bytes(4 * 1024 * 1024))  # the start of the data; the rest is never read
    started = time.perf_counter()
    with pytest.raises(ArchiveError, match="expands to more than 512.0 MiB"):
        extract_archive(path, tmp_path / "out")
    assert time.perf_counter() - started < 1.0


def _truncated(tmp_path: Path, fraction: float) -> Path:
    good = _make_archive(tmp_path / "good.tar.gz", {**GOOD, "nlu/weights.bin": random.Random(0).randbytes(200_000)})
    data = good.read_bytes()
    path = tmp_path / "truncated.tar.gz"
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.99], ids=["head", "middle", "tail"])
def test_a_truncated_archive_is_a_clear_error(tmp_path: Path, fraction: float) -> None:
    path = _truncated(tmp_path, fraction)
    for read in (lambda: read_archive_json(path), lambda: extract_archive(path, tmp_path / "out")):
        with pytest.raises(ArchiveError, match="not a readable .tar.gz model archive") as raised:
            read()
        assert raised.value.location == str(path)
        assert raised.value.hint and "truncated or damaged" in raised.value.hint


def test_a_truncated_archive_next_to_good_ones_is_skipped_with_a_warning(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    good = _make_archive(models / "good.tar.gz", GOOD)
    _truncated(tmp_path, 0.5).rename(models / "zzz-newest.tar.gz")
    skipped: list[ArchiveError] = []

    assert find_latest_model(models, skipped=skipped) == good
    assert [e.location for e in skipped] == [str(models / "zzz-newest.tar.gz")]


@pytest.mark.parametrize(
    "member, data, message",
    [
        ("metadata.json", b'{"name": "caf\xe9"}', "metadata.json is not UTF-8 text"),
        ("metadata.json", b"[1, 2]", "metadata.json: must hold a JSON object, received a list"),
        ("metadata.json", b'{"finetunes_in_a_row": "3"}', "finetunes_in_a_row must be a whole number >= 0, received '3'"),
        ("metadata.json", b'{"finetunes_in_a_row": -1}', "finetunes_in_a_row must be a whole number >= 0, received -1"),
        ("metadata.json", b'{"trained_at": 17}', "trained_at must be a string, received a number 17"),
        ("metadata.json", b'{"git": ["abc"]}', "git must be an object, received a list"),
        ("metadata.json", b'{"name": ', "metadata.json is not valid JSON"),
        ("fingerprint.json", b'{"sections": ["a", "b"]}', "sections must be an object of section name -> hash, received a list"),
        ("fingerprint.json", b'{"sections": {"nlu": 1}}', "sections.nlu must be a hash string, received a number"),
        ("fingerprint.json", b'{"examples": {"greet": [{}]}}', "examples.greet must be a list of strings, received a list containing an object"),
        ("fingerprint.json", b'{"labels": "intents"}', "labels must be an object, received a string"),
        ("fingerprint.json", b'"x"', "fingerprint.json: must hold a JSON object, received a string"),
    ],
    ids=["metadata-not-utf8", "metadata-list", "finetunes-string", "finetunes-negative", "trained-at-number",
         "git-list", "metadata-truncated-json", "sections-list", "section-number", "examples-objects",
         "labels-string", "fingerprint-string"],
)
def test_malformed_side_files_are_clear_errors(tmp_path: Path, member: str, data: bytes, message: str) -> None:
    archive = _make_archive(tmp_path / "m.tar.gz", {**GOOD, member: data})

    with pytest.raises(ArchiveError) as raised:
        read_archive_json(archive)
    assert message in raised.value.message
    assert raised.value.location == f"{archive}:{member}"
