"""open_store picks backends by URL scheme and imports them lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import StoreError
from pipeline.stores import open_store
from pipeline.stores.http import HttpBackend
from pipeline.stores.local import LocalBackend


def test_unknown_scheme_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as raised:
        open_store("ftp://user:hunter2@example.com/models", base_dir=tmp_path)

    text = str(raised.value)
    assert "'ftp'" in text
    for scheme in ("file://", "http://", "https://", "s3://"):
        assert scheme in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("url", "backend_type", "display"),
    [
        (
            "https://repo.example.com/artifactory/models",
            HttpBackend,
            "https://repo.example.com/artifactory/models/",
        ),
        ("HTTP://host:8080/dav/", HttpBackend, "http://host:8080/dav/"),
        ("store-dir", LocalBackend, None),
    ],
    ids=["https", "http-upper-case", "path"],
)
def test_scheme_picks_the_backend(
    tmp_path: Path, url: str, backend_type: type, display: str | None
) -> None:
    store = open_store(url, base_dir=tmp_path, token="tok")

    assert isinstance(store.backend, backend_type)
    assert store.url == (display or (tmp_path / "store-dir").as_uri())
    assert "tok" not in store.url


def test_s3_without_boto3_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)

    with pytest.raises(StoreError, match="pip install boto3"):
        open_store("s3://bucket/prefix", base_dir=tmp_path)


def test_s3_url_needs_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no bucket"):
        open_store("s3:///prefix", base_dir=tmp_path)


def test_backends_are_imported_only_when_used(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from pipeline.stores import open_store;"
        f"open_store(None, base_dir=Path({str(tmp_path)!r}));"
        "print(sorted(m for m in ('requests', 'boto3', 'botocore') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )

    assert out.stdout.strip() == "[]"
