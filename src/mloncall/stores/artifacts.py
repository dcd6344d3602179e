"""The artifact store: model files, dataset snapshots, logs, under one URL root through fsspec.

A local folder by default, `s3://bucket/prefix` in production. Every write goes to a temporary name and is
then renamed, so a crash never leaves a partial file under a real name; every write returns the sha256 the
caller records, and every verified read recomputes it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from mloncall.core.errors import IntegrityError, InvalidInput, NotFound, StoreUnavailable

_KEY = re.compile(r"^[A-Za-z0-9._@=+-]+(/[A-Za-z0-9._@=+-]+)*$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredFile:
    """A file as written: its key under the root, sha256 and size in bytes."""

    key: str
    sha256: str
    size: int


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Atomic, checksummed reads and writes under one fsspec URL root."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        self.root = root.rstrip("/")
        options = dict(storage_options or {})
        if self.root.startswith("s3://"):
            endpoint = os.environ.get("MLONCALL_S3_ENDPOINT_URL")
            if endpoint:
                options.setdefault("client_kwargs", {})["endpoint_url"] = endpoint
        try:
            self.fs, self.base = fsspec.core.url_to_fs(self.root, **options)
        except (ImportError, ValueError) as exc:
            raise InvalidInput(f"artifact store {self.root!r} cannot be used: {exc}") from None
        self.is_local = self.fs.protocol in ("file", ("file", "local")) or "file" in self.fs.protocol

    def _path(self, key: str) -> str:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise InvalidInput(f"invalid artifact key {key!r}")
        return posixpath.join(self.base, key)

    def url(self, key: str) -> str:
        """Where a person finds the file."""
        return f"{self.root}/{key}"

    def check(self) -> None:
        """Make sure the root exists and is writable, raising StoreUnavailable otherwise."""
        probe = f".probe-{uuid.uuid4().hex}"
        try:
            if self.is_local:
                self.fs.makedirs(self.base, exist_ok=True)
            self.fs.pipe_file(self._path(probe), b"ok")
            self.fs.rm_file(self._path(probe))
        except Exception as exc:
            raise StoreUnavailable(f"artifact store {self.root} is not usable: {_reason(exc)}") from None

    def put_bytes(self, key: str, data: bytes) -> StoredFile:
        """Write bytes under key atomically and return their checksum."""
        final = self._path(key)
        tmp = posixpath.join(posixpath.dirname(final), f".tmp-{uuid.uuid4().hex}-{posixpath.basename(final)}")
        try:
            if self.is_local:
                self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
            else:
                self.fs.pipe_file(tmp, data)
                self.fs.mv(tmp, final)
        except Exception as exc:
            self._discard(tmp)
            raise StoreUnavailable(f"could not write {self.url(key)}: {_reason(exc)}") from None
        return StoredFile(key=key, sha256=sha256_bytes(data), size=len(data))

    def put_file(self, key: str, local_path: Path) -> StoredFile:
        """Copy a local file under key atomically."""
        return self.put_bytes(key, Path(local_path).read_bytes())

    def get_bytes(self, key: str) -> bytes:
        """The file's bytes; NotFound if absent."""
        try:
            with self.fs.open(self._path(key), "rb") as fh:
                data: bytes = fh.read()
                return data
        except FileNotFoundError:
            raise NotFound(f"artifact {self.url(key)} does not exist") from None
        except Exception as exc:
            raise StoreUnavailable(f"could not read {self.url(key)}: {_reason(exc)}") from None

    def read_verified(self, key: str, sha256: str) -> bytes:
        """The file's bytes, only if they hash to the recorded sha256; IntegrityError names the file otherwise."""
        try:
            data = self.get_bytes(key)
        except NotFound:
            raise IntegrityError(f"artifact {self.url(key)} is missing", details={"file": key}) from None
        actual = sha256_bytes(data)
        if actual != sha256:
            raise IntegrityError(
                f"artifact {self.url(key)} is altered: sha256 {actual[:12]}… != recorded {sha256[:12]}…",
                details={"file": key, "expected": sha256, "actual": actual},
            )
        return data

    def sha256_of(self, key: str) -> str | None:
        """Stream the file and return its sha256, or None if it does not exist."""
        digest = hashlib.sha256()
        try:
            with self.fs.open(self._path(key), "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StoreUnavailable(f"could not read {self.url(key)}: {_reason(exc)}") from None
        return digest.hexdigest()

    def exists(self, key: str) -> bool:
        try:
            return bool(self.fs.exists(self._path(key)))
        except Exception as exc:
            raise StoreUnavailable(f"could not reach {self.root}: {_reason(exc)}") from None

    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix (recursive), temporary files excluded."""
        base = self._path(prefix)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise StoreUnavailable(f"could not list {self.url(prefix)}: {_reason(exc)}") from None
        start = len(self.base.rstrip("/")) + 1
        keys = [p[start:] if p.startswith(self.base) else p for p in found]
        return sorted(k for k in keys if not posixpath.basename(k).startswith(".tmp-"))

    def delete(self, key: str) -> None:
        self._discard(self._path(key))

    def delete_prefix(self, prefix: str) -> None:
        """Remove everything under a prefix (used to undo a failed registration)."""
        try:
            if self.fs.exists(self._path(prefix)):
                self.fs.rm(self._path(prefix), recursive=True)
        except (
            Exception
        ):  # best effort: an orphan folder is harmless, a raised error here would hide the cause
            pass

    def _discard(self, path: str) -> None:
        try:
            if self.fs.exists(path):
                self.fs.rm_file(path)
        except Exception:
            pass


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
