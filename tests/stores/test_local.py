"""LocalBackend: atomic writes, interrupted uploads, paths and file:// URLs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

import pytest

from pipeline.errors import StoreError, StoreNotFoundError
from pipeline.stores import ModelStore, open_store
from pipeline.stores.local import LocalBackend

from .conftest import FixedClock, write_archive


def publish(store: ModelStore, tmp_path: Path, name: str, seed: int = 0) -> None:
    store.publish(
        write_archive(tmp_path, name, seed=seed),
        name=name,
        fingerprint={"nlu": name},
        metadata={},
        metrics={},
    )


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """A local store whose latest model is ``old``."""
    opened = ModelStore(LocalBackend(tmp_path / "store"), clock=FixedClock())
    publish(opened, tmp_path, "old")
    return opened


def stray_files(root: Path) -> list[str]:
    """Hidden leftovers (temp files), apart from the manifest's permanent lock file."""
    return sorted(
        p.name for p in root.rglob("*") if p.name.startswith(".") and p.name != ".manifest.json.lock"
    )


def test_interrupted_archive_upload_keeps_the_manifest(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (tmp_path / "store" / "manifest.json").read_bytes()

    def put_half_then_fail(self: LocalBackend, key: str, path: Path) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes()[:100])
        raise StoreError("simulated interruption")

    monkeypatch.setattr(LocalBackend, "put_file", put_half_then_fail)

    with pytest.raises(StoreError, match="simulated"):
        publish(store, tmp_path, "new")

    assert (tmp_path / "store" / "manifest.json").read_bytes() == before
    latest = store.read_latest()
    assert latest is not None and latest.name == "old"


def test_copy_failing_midway_leaves_neither_partial_nor_temp_files(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def copy_half_then_fail(source: BinaryIO, out: BinaryIO, length: int = 0) -> None:
        out.write(source.read(1000))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", copy_half_then_fail)

    with pytest.raises(StoreError, match="No space left") as raised:
        publish(store, tmp_path, "new")

    assert "models/new/model.tar.gz" in str(raised.value)
    assert not (tmp_path / "store" / "models" / "new").exists()
    assert stray_files(tmp_path / "store") == []
    latest = store.read_latest()
    assert latest is not None and latest.name == "old"


def test_manifest_replace_failure_keeps_the_old_manifest(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (tmp_path / "store" / "manifest.json").read_bytes()
    real_replace = os.replace

    def refuse_manifest(src: str, dst: os.PathLike[str]) -> None:
        if Path(dst).name == "manifest.json":
            raise PermissionError(13, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_manifest)

    with pytest.raises(StoreError, match="Permission denied"):
        publish(store, tmp_path, "new")

    assert (tmp_path / "store" / "manifest.json").read_bytes() == before
    assert stray_files(tmp_path / "store") == []


def test_pruning_removes_empty_model_folders(tmp_path: Path) -> None:
    opened = ModelStore(LocalBackend(tmp_path / "store"), clock=FixedClock())
    for seed, name in enumerate(["m1", "m2"]):
        opened.publish(
            write_archive(tmp_path, name, seed=seed),
            name=name,
            fingerprint={},
            metadata={},
            metrics={},
            keep=1,
        )

    assert sorted(p.name for p in (tmp_path / "store" / "models").iterdir()) == ["m2"]


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "models//x", "models/./x", ""])
def test_keys_cannot_escape_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(StoreError, match="invalid store key"):
        LocalBackend(tmp_path).get_bytes(key)


def test_missing_key_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        LocalBackend(tmp_path).get_bytes("manifest.json")


def test_default_store_is_inside_base_dir(tmp_path: Path) -> None:
    store = open_store(None, base_dir=tmp_path)
    publish(store, tmp_path, "m1")

    assert (tmp_path / ".deltatrain" / "store" / "manifest.json").is_file()
    assert store.url == (tmp_path / ".deltatrain" / "store").as_uri()


@pytest.mark.parametrize("form", ["relative", "absolute", "file-url"])
def test_paths_and_file_urls_open_the_same_folder(tmp_path: Path, form: str) -> None:
    folder = tmp_path / "shared" / "models-store"
    url = {"relative": "shared/models-store", "absolute": str(folder), "file-url": folder.as_uri()}[
        form
    ]

    store = open_store(url, base_dir=tmp_path)

    assert isinstance(store.backend, LocalBackend)
    assert store.backend.root == folder


def test_remote_file_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="must be local"):
        open_store("file://fileserver/share", base_dir=tmp_path)
