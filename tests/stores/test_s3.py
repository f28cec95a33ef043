"""S3Backend specifics against a moto server: prefixes and error translation."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from pipeline.errors import StoreAuthError, StoreNotFoundError
from pipeline.stores import open_store
from pipeline.stores.s3 import S3Backend

from .conftest import write_archive


def test_objects_live_under_the_prefix(
    s3_url: str, s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    store = open_store(s3_url, base_dir=tmp_path, s3_endpoint_url=moto_endpoint)
    store.publish(write_archive(tmp_path, "m1"), name="m1", fingerprint={}, metadata={}, metrics={})

    prefix = s3_url.removeprefix(f"s3://{s3_bucket}/")
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    keys = sorted(
        o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket, Prefix=prefix)["Contents"]
    )
    assert keys == [
        f"{prefix}/{k}"
        for k in [
            "manifest.json",
            "models/m1/fingerprint.json",
            "models/m1/metadata.json",
            "models/m1/metrics.json",
            "models/m1/model.tar.gz",
        ]
    ]
    assert store.url == f"{s3_url}/"
    assert isinstance(store.backend, S3Backend)


def test_missing_bucket_reads_empty_and_refuses_uploads(
    aws_env: None, moto_endpoint: str, tmp_path: Path
) -> None:
    store = open_store(
        "s3://no-such-bucket-here/x", base_dir=tmp_path, s3_endpoint_url=moto_endpoint
    )

    assert store.read_latest() is None
    with pytest.raises(StoreNotFoundError, match="NoSuchBucket") as raised:
        store.publish(
            write_archive(tmp_path, "m1"), name="m1", fingerprint={}, metadata={}, metrics={}
        )
    assert "create the bucket" in str(raised.value)


def test_missing_credentials_are_an_auth_error(
    s3_url: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store(s3_url, base_dir=tmp_path, s3_endpoint_url=moto_endpoint)

    with pytest.raises(StoreAuthError, match="no AWS credentials"):
        store.read_latest()
