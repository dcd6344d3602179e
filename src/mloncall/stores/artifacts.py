"""The artifact store: model files, dataset snapshots, logs, under one URL root through fsspec.

A local folder by default, `s3://bucket/prefix` in production. Every write goes to a temporary name and is
then renamed, so a crash never leaves a partial file under a real name; every write returns the sha256 the
caller records, and every verified read recomputes it.

A registration writes its files under `staging/` (`staged(key)`), where no reader looks, and moves them to
their real key (`promote`) only once the row naming them has committed. What a crash leaves behind, a staged
folder or a folder no row names, is found by `leftovers` and removed (or, staged for a committed row, moved
into place) by `mloncall gc`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import posixpath
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from mloncall.core.errors import IntegrityError, InvalidInput, NotFound, StoreUnavailable

_KEY = re.compile(r"^[A-Za-z0-9._@=+-]+(/[A-Za-z0-9._@=+-]+)*$")
_CHUNK = 1 << 20
#: The prefix registrations write under before their row commits; no reader lists it.
STAGING = "staging"
#: A leftover is the unit a registration writes: `AREA/NAME/ID` (a version folder, a snapshot file).
_UNIT_DEPTH = 3


@dataclass(frozen=True)
class StoredFile:
    """A file as written: its key under the root, sha256 and size in bytes."""

    key: str
    sha256: str
    size: int


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staged(key: str) -> str:
    """Where a registration writes `key` (a file or a folder) until its row commits."""
    return f"{STAGING}/{key}"


@dataclass(frozen=True)
class Leftover:
    """What a crash left in the store: a staged unit, or a unit at its real key that no row names.

    `key` is the unit's real key (without `staging/`); `claimed` says a committed row names it, so a staged
    claimed unit is a registration that committed but died before its files were moved into place.
    """

    key: str
    staged: bool
    claimed: bool
    files: int
    size: int
    modified: dt.datetime

    @property
    def kind(self) -> str:
        if self.staged:
            return "unpromoted" if self.claimed else "staging"
        return "orphaned"

    @property
    def location(self) -> str:
        return staged(self.key) if self.staged else self.key


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
            raise InvalidInput(f"artifact store {hide_password(self.root)!r} cannot be used: {exc}") from None
        except OSError as exc:  # a filesystem that connects as it is made (ftp, sftp): host unknown, refused
            raise StoreUnavailable(
                f"artifact store {hide_password(self.root)} cannot be reached: {_reason(exc)}"
            ) from None
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

    def promote(self, key: str) -> None:
        """Move `staging/KEY` (a file or a folder) to KEY, once the row naming KEY has committed.

        Locally one rename. An object store has no rename: every object is copied and checked before any
        staged one is deleted, so a crash at any point leaves either the whole staged copy (promote again,
        as `mloncall gc` does) or the whole real one; running it twice is harmless.
        """
        source = staged(key)
        try:
            if self.is_local:
                self._promote_local(self._path(source), self._path(key))
                return
            self.fs.invalidate_cache()
            moved = [(k, key + k[len(source) :]) for k in self.list(source)]
            for src, dst in moved:
                self._copy_object(self._path(src), self._path(dst))
            self.fs.invalidate_cache()
            for src, dst in moved:
                if self.fs.info(self._path(dst))["size"] != self.fs.info(self._path(src))["size"]:
                    raise OSError(f"the copy of {src} at {dst} differs in size")
            self.fs.rm(self._path(source), recursive=True)
        except Exception as exc:
            raise StoreUnavailable(
                f"could not move {self.url(source)} to {self.url(key)}: {_reason(exc)} "
                "(run `mloncall gc --yes` to finish the move)"
            ) from None

    def _promote_local(self, src: str, dst: str) -> None:
        if not os.path.exists(src):
            if os.path.exists(dst):
                return  # already moved
            raise FileNotFoundError(src)
        os.makedirs(posixpath.dirname(dst), exist_ok=True)
        try:
            os.replace(src, dst)
        except OSError:
            if not os.path.isdir(src):
                raise
            # dst is a non-empty folder (an earlier promote): move file by file, then drop the staged one.
            for key in self.fs.find(src):
                target = posixpath.join(dst, posixpath.relpath(key, src))
                os.makedirs(posixpath.dirname(target), exist_ok=True)
                os.replace(key, target)
            self.fs.rm(src, recursive=True)

    def _copy_object(self, src: str, dst: str) -> None:
        self.fs.copy(src, dst)

    def leftovers(
        self, *, claimed: Mapping[str, Collection[str]], older_than: dt.timedelta, now: dt.datetime
    ) -> Sequence[Leftover]:
        """Staged units and units no row names, in each area (`models`, `datasets`) of `claimed`, whose
        newest file is older than `older_than` at `now` (a younger one may be a registration under way)."""
        found: list[Leftover] = []
        for area, keys in claimed.items():
            named = set(keys)
            for is_staged in (False, True):
                units = self._units(staged(area) if is_staged else area, strip=is_staged)
                for unit, (files, size, modified) in sorted(units.items()):
                    claim = unit in named
                    if (claim and not is_staged) or now - modified < older_than:
                        continue
                    found.append(Leftover(unit, is_staged, claim, files, size, modified))
        return found

    def remove_leftover(self, leftover: Leftover) -> None:
        """Remove a leftover, or move a claimed staged one into place."""
        if leftover.claimed and leftover.staged:
            self.promote(leftover.key)
            return
        path = self._path(leftover.location)
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise StoreUnavailable(
                f"could not remove {self.url(leftover.location)}: {_reason(exc)}"
            ) from None

    def _units(self, prefix: str, *, strip: bool) -> dict[str, tuple[int, int, dt.datetime]]:
        """Files under prefix grouped by unit (`AREA/NAME/ID`): how many, their bytes, the newest's time."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self._path(prefix), detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise StoreUnavailable(f"could not list {self.url(prefix)}: {_reason(exc)}") from None
        start = len(self.base.rstrip("/")) + 1
        units: dict[str, tuple[int, int, dt.datetime]] = {}
        for path, info in found.items():
            key = path[start:] if path.startswith(self.base) else path
            parts = key.split("/")[1:] if strip else key.split("/")
            unit = "/".join(parts[:_UNIT_DEPTH])
            files, size, newest = units.get(unit, (0, 0, dt.datetime.min.replace(tzinfo=dt.UTC)))
            units[unit] = (files + 1, size + int(info.get("size") or 0), max(newest, _modified(info)))
        return units

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


def _modified(info: Mapping[str, Any]) -> dt.datetime:
    """When a listed file last changed: a local file's mtime, an object's LastModified."""
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return dt.datetime.now(dt.UTC)  # unknown: treat as new, so it is never removed by mistake


def hide_password(url: str) -> str:
    """The URL with the password of its user part (`ftp://user:secret@host/...`) hidden, for messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.partition("@")
    if not sep or not at or ":" not in userinfo or "/" in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
