"""Files sent in an HTTP request body: CSV or Parquet, kept in a temporary file only while they are read."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from mloncall.core.errors import InvalidInput, MloncallError

_SUFFIX = {
    "text/csv": ".csv",
    "application/csv": ".csv",
    "text/plain": ".csv",
    "application/vnd.apache.parquet": ".parquet",
    "application/x-parquet": ".parquet",
    "application/octet-stream": ".bin",
}


class UnsupportedMediaType(MloncallError):
    code = "unsupported_media_type"
    http_status = 415
    exit_code = 2


async def _raw_body(request: Request) -> bytes:
    return await request.body()


#: The raw request body, whatever its content type (checked by `uploaded_table`, so JSON gets 415, not 400).
RawBody = Annotated[bytes, Depends(_raw_body)]

#: OpenAPI description of a table body, for `openapi_extra` on routes that take `RawBody`.
TABLE_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The rows as CSV (text/csv) or Parquet (application/vnd.apache.parquet).",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@contextmanager
def uploaded_table(request: Request, body: bytes) -> Iterator[Path]:
    """The request body as a temporary .csv/.parquet file, by its content type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    suffix = _SUFFIX.get(content_type)
    if suffix is None:
        raise UnsupportedMediaType(
            f"send the data as text/csv or application/vnd.apache.parquet, not {content_type or 'no content type'}"
        )
    if not body:
        raise InvalidInput("the request body is empty: send the CSV or Parquet file as the body")
    with tempfile.TemporaryDirectory(prefix="mloncall-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(body)
        try:
            yield path
        except MloncallError as exc:
            # The reader names the file it read: to the client that is its request body, not a server path.
            exc.message = exc.message.replace(f"data file {path}", "the request body").replace(
                str(path), "the request body"
            )
            exc.args = (exc.message,)
            raise
