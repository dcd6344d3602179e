"""Reaching a source: the objects under an S3 prefix (boto3) and the rows of a SQL query (SQLAlchemy), with
their failures sorted into transient ones (retry) and deterministic ones (fix the source or the declaration).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mloncall.core.errors import InvalidInput, NotFound, StoreUnavailable

#: S3 error codes that say "try again later".
_TRANSIENT_S3 = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "500",
    "502",
    "503",
    "504",
}
_MISSING_S3 = {"NoSuchBucket", "NoSuchKey", "404"}
#: Words of a database error that is about reaching the server, not about the query.
_TRANSIENT_SQL = (
    "could not connect",
    "connection refused",
    "timeout",
    "timed out",
    "server closed",
    "connection reset",
    "database is locked",
)
_MISSING_SQL = ("no such table", "does not exist", "unknown table")


class TransientSourceError(StoreUnavailable):
    """The source could not be reached this time (a timeout, a refused connection): retry with backoff."""


class SourceMissing(NotFound):
    """The source has nothing to read: no file matches, no such bucket or prefix, no such table."""


@dataclass
class SourceFile:
    """One file of a source: where it is, its size and modification time, how to read and remove it."""

    location: str
    size: int
    modified: dt.datetime
    fetch: Callable[[], bytes]
    remove: Callable[[], None]


def _split(url: str) -> tuple[str, str, str]:
    """bucket, prefix to list, and a glob on the key (`s3://b/dir/*.csv`), from an s3:// URL."""
    rest = url.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise InvalidInput(f"invalid S3 location {url!r}: use s3://bucket/prefix")
    if any(c in key for c in "*?["):
        head = key[: min(key.index(c) for c in "*?[" if c in key)]
        return bucket, head, key
    return bucket, key, ""


def _client(endpoint_url: str | None, timeout: float) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"}
    )
    endpoint = endpoint_url or os.environ.get("MLONCALL_S3_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def s3_call(what: str, fn: Callable[[], Any]) -> Any:
    """Run one S3 call, raising TransientSourceError, SourceMissing or InvalidInput for its failures."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        return fn()
    except BotoConnectionError as exc:
        raise TransientSourceError(
            f"{what}: the S3 endpoint cannot be reached ({exc}); retry later"
        ) from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = exc.response.get("Error", {}).get("Message", "") or code
        if code in _TRANSIENT_S3:
            raise TransientSourceError(f"{what}: S3 answered {code} ({message}); retry later") from None
        if code in _MISSING_S3:
            raise SourceMissing(f"{what}: {message}") from None
        raise InvalidInput(f"{what}: S3 refused it: {code} ({message})") from None
    except BotoCoreError as exc:  # credentials missing, a bad endpoint URL
        raise InvalidInput(f"{what}: {exc}") from None


def list_s3(url: str, *, endpoint_url: str | None, timeout: float) -> list[SourceFile]:
    """The objects under an S3 prefix (or matching its glob), by key."""
    bucket, prefix, pattern = _split(url)
    client = _client(endpoint_url, timeout)
    found: list[SourceFile] = []

    def page_through() -> None:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/") or (pattern and not fnmatch.fnmatchcase(key, pattern)):
                    continue
                found.append(_s3_file(client, bucket, key, int(obj["Size"]), obj["LastModified"]))

    s3_call(f"listing {url}", page_through)
    return sorted(found, key=lambda f: f.location)


def _s3_file(client: Any, bucket: str, key: str, size: int, modified: dt.datetime) -> SourceFile:
    location = f"s3://{bucket}/{key}"

    def fetch() -> bytes:
        body = s3_call(
            f"reading {location}", lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read()
        )
        return bytes(body)

    def remove() -> None:
        s3_call(f"moving {location} aside", lambda: client.delete_object(Bucket=bucket, Key=key))

    return SourceFile(location, size, modified.astimezone(dt.UTC), fetch, remove)


def run_query(url: str, query: str, *, timeout: float) -> pd.DataFrame:
    """The query's rows; TransientSourceError when the database cannot be reached, SourceMissing when a
    table is not there, InvalidInput for a bad URL or query."""
    import sqlalchemy as sa

    try:
        args: dict[str, Any] = {}
        if url.startswith("postgresql"):
            args = {"connect_timeout": max(int(timeout), 1)}
        elif url.startswith("sqlite"):
            args = {"timeout": timeout}
        engine = sa.create_engine(url, connect_args=args, poolclass=sa.pool.NullPool)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise InvalidInput(f"invalid source database URL: {exc}") from None
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(query))
            names = [str(k) for k in result.keys()]  # noqa: SIM118 (a Result is not a mapping)
            return pd.DataFrame(result.fetchall(), columns=names)
    except sa.exc.DBAPIError as exc:
        text = str(exc.orig).lower()
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        if isinstance(exc, sa.exc.OperationalError) and any(w in text for w in _TRANSIENT_SQL):
            raise TransientSourceError(
                f"the source database cannot be reached: {first}; retry later"
            ) from None
        if any(w in text for w in _MISSING_SQL):
            raise SourceMissing(f"the source query reads what is not there: {first}") from None
        raise InvalidInput(f"the source query failed: {first}") from None
    except sa.exc.SQLAlchemyError as exc:
        raise InvalidInput(f"the source query failed: {exc}") from None
    finally:
        engine.dispose()
