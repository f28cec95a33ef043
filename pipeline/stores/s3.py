"""Model store in S3 or an S3-compatible service (MinIO, Ceph) via boto3, imported lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pipeline.errors import StoreAuthError, StoreError, StoreNotFoundError
from pipeline.stores.backend import (
    BackendOptions,
    Conditional,
    ListedKey,
    Versioned,
    content_version,
    too_large,
)
from pipeline.stores.layout import check_key

INSTALL_HINT = "pip install boto3  (or: pip install 'deltatrain[s3]')"
_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchBucket"})
_AUTH = frozenset(
    {
        "AccessDenied",
        "403",
        "401",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
    }
)

#: A conditional read of an unchanged object (GetObject with IfNoneMatch).
_NOT_MODIFIED = frozenset({"304", "NotModified", "Not Modified"})

#: Conditional-write answers: the object changed (412) or a concurrent write is in flight (409).
_CONFLICT = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class S3Backend:
    """Keys live under ``s3://bucket/prefix/``; boto3 errors become store errors."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def __repr__(self) -> str:
        return f"S3Backend({self.describe('')!r})"

    def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """GetObject and read the body (at most ``max_bytes``)."""
        data, _ = self._get(key, max_bytes)
        assert data is not None  # only a conditional read has no body
        return data

    def get_versioned(self, key: str, *, max_bytes: int | None = None) -> Versioned | None:
        """GetObject; the version is the object's ETag."""
        try:
            data, etag = self._get(key, max_bytes)
        except StoreNotFoundError:
            return None
        assert data is not None  # only a conditional read has no body
        return Versioned(data, etag or content_version(data))

    def get_if_changed(
        self, key: str, token: str | None, *, max_bytes: int | None = None
    ) -> Conditional | None:
        """GetObject with ``IfNoneMatch=<ETag>``: S3 answers 304 when unchanged."""
        try:
            data, etag = self._get(key, max_bytes, if_none_match=token)
        except StoreNotFoundError:
            return None
        return Conditional(etag or None, data)

    def put_if_version(self, key: str, data: bytes, expected: str | None) -> bool:
        """PutObject with ``IfMatch`` (or ``IfNoneMatch='*'`` to create): S3 conditional writes."""
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except Exception as exc:
            if _error_code(exc) in _CONFLICT:
                return False
            if _error_code(exc) in ("NotImplemented", "501"):
                raise StoreError(
                    f"the S3 service does not support conditional writes (PutObject with"
                    f" If-Match / If-None-Match) for {self.describe(key)}",
                    location=self.describe(key),
                    hint="use AWS S3 or a recent MinIO/Ceph release; publishing needs them to keep"
                    " concurrent pipelines from overwriting each other's manifest",
                ) from exc
            self._raise("write", key, exc)
        return True

    def _get(
        self, key: str, max_bytes: int | None, *, if_none_match: str | None = None
    ) -> tuple[bytes | None, str | None]:
        condition = {"IfNoneMatch": if_none_match} if if_none_match else {}
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key), **condition)
            body = response["Body"]
            with body:
                length = response.get("ContentLength")
                if max_bytes is not None and length is not None and int(length) > max_bytes:
                    raise too_large(key, self.describe(key), max_bytes)
                data: bytes = body.read() if max_bytes is None else body.read(max_bytes + 1)
        except StoreError:
            raise
        except Exception as exc:
            if if_none_match and _error_code(exc) in _NOT_MODIFIED:
                return None, if_none_match
            self._raise("read", key, exc)
        if max_bytes is not None and len(data) > max_bytes:
            raise too_large(key, self.describe(key), max_bytes)
        return data, response.get("ETag")

    def put_bytes(self, key: str, data: bytes) -> None:
        """PutObject with the bytes."""
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as exc:
            self._raise("write", key, exc)

    def put_file(self, key: str, path: Path) -> None:
        """Managed upload (multipart for big files), streamed from disk."""
        try:
            self._client.upload_file(str(path), self.bucket, self._key(key))
        except Exception as exc:
            self._raise("upload", key, exc)

    def get_to_file(self, key: str, path: Path) -> None:
        """Managed download into ``path``."""
        try:
            self._client.download_file(self.bucket, self._key(key), str(path))
        except Exception as exc:
            self._raise("download", key, exc)

    def exists(self, key: str) -> bool:
        """HeadObject; False on 404."""
        try:
            self.size(key)
        except StoreNotFoundError:
            return False
        return True

    def size(self, key: str) -> int | None:
        """ContentLength from HeadObject."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            self._raise("inspect", key, exc)
        length = head.get("ContentLength")
        return int(length) if length is not None else None

    def delete(self, key: str) -> None:
        """DeleteObject (S3 does not mind missing keys)."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            self._raise("delete", key, exc)

    def list_keys(self, prefix: str) -> list[ListedKey]:
        """ListObjectsV2 under ``prefix``, with LastModified."""
        base = self._key(prefix.rstrip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        found = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(ListedKey(item["Key"][strip:], item["LastModified"]))
        except Exception as exc:
            self._raise("list", prefix.rstrip("/"), exc)
        return found

    def describe(self, key: str) -> str:
        """``s3://bucket/prefix/key`` (the root for ``""``)."""
        path = self._key(key) if key else (f"{self.prefix}/" if self.prefix else "")
        return f"s3://{self.bucket}/{path}"

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _raise(self, action: str, key: str, exc: Exception) -> NoReturn:
        """Translate a boto3/botocore exception; re-raise anything else untouched."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = self.describe(key)
        cause: BaseException = exc
        if isinstance(exc, Boto3Error) and isinstance(exc.__context__, ClientError):
            cause = exc.__context__  # S3UploadFailedError wraps the ClientError implicitly
        if isinstance(cause, ClientError):
            code = str(cause.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                hint = f"create the bucket {self.bucket!r}" if code == "NoSuchBucket" else None
                raise StoreNotFoundError(
                    f"not found in the model store: {where} ({code})", location=where, hint=hint
                ) from exc
            if code in _AUTH:
                raise StoreAuthError(
                    f"S3 refused to {action} {where}: {code}",
                    location=where,
                    hint="check the AWS credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) and the"
                    " bucket policy; without s3:ListBucket, S3 answers 403 for missing keys too",
                ) from exc
            raise StoreError(
                f"S3 could not {action} {where}: {code or 'error'}", location=where
            ) from exc
        if isinstance(exc, NoCredentialsError):
            raise StoreAuthError(
                f"no AWS credentials to {action} {where}",
                location=where,
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            ) from exc
        if isinstance(exc, (BotoCoreError, Boto3Error)):
            raise StoreError(
                f"S3 could not {action} {where}: {type(exc).__name__}",
                location=where,
                hint="check the network and the endpoint"
                " (AWS_ENDPOINT_URL, DELTATRAIN_S3_ENDPOINT_URL)",
            ) from exc
        raise exc


def open_backend(url: str, options: BackendOptions) -> S3Backend:
    """Build an S3Backend for ``s3://bucket/prefix``; StoreError with a hint if boto3 is missing."""
    parts = urlsplit(url)
    if not parts.netloc:
        raise StoreError(
            f"S3 store URL has no bucket: {url!r}", hint="use s3://bucket/optional/prefix"
        )
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise StoreError(
            f"the S3 model store needs boto3, which is not installed (store URL {url})",
            hint=INSTALL_HINT,
        ) from exc
    from botocore.exceptions import BotoCoreError

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=120
    )
    try:
        session = boto3.session.Session()  # not boto3's global one: read credentials now
        client = session.client("s3", endpoint_url=options.s3_endpoint_url, config=config)
    except (BotoCoreError, ValueError) as exc:
        raise StoreError(
            f"cannot set up the S3 client for {url}: {type(exc).__name__}",
            hint="check AWS_PROFILE / AWS_DEFAULT_REGION and the endpoint URL"
            f" (received endpoint {options.s3_endpoint_url!r})",
        ) from exc
    return S3Backend(client, parts.netloc, parts.path)
