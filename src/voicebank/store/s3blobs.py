"""Content-addressed files of a shared library in an S3-compatible object store: ``<prefix>blobs/<ab>/<sha256><sfx>``.

The same layout and interface as :class:`~voicebank.store.blobs.BlobStore` (``write`` returns the digest,
``verify``, ``unlink``, ``files``, ``read``), for a library whose catalogue is in PostgreSQL.  An object's key is
the sha256 of its bytes, so objects are immutable: the same key always holds the same bytes, and a reader may
keep a copy.  An object appears whole or not at all (an S3 ``PUT`` is atomic), so there are no temp files.  The
store writes an object before the catalogue row that references it is committed; a crash in between leaves an
unreferenced object, which ``library check`` lists (and deletes when asked).

Credentials and the endpoint come from boto3's usual sources: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL`` (a non-AWS server such as SeaweedFS or MinIO), ``AWS_DEFAULT_REGION``, or a profile.
``boto3`` is imported on first use: the core package does not need it (``pip install voicebank[s3]``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import (
    ContentMissingError,
    LibraryError,
    LibraryUnavailableError,
    LibraryWriteError,
    MissingDependencyError,
)
from .blobs import sha256_bytes

_HEX = frozenset("0123456789abcdef")


def is_s3_url(location: object) -> bool:
    """Whether ``location`` names an object store location (``s3://bucket/prefix``)."""
    return isinstance(location, str) and location.startswith("s3://")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix``; the prefix is ``""`` or ends with ``/``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise LibraryError(f"{url!r}: not an object store location; write s3://bucket/prefix")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _client() -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as e:
        raise MissingDependencyError("a library in an object store needs boto3: pip install 'voicebank[s3]'") from e
    # the endpoint (AWS_ENDPOINT_URL), region and credentials: boto3's own sources (botocore >= 1.31)
    # three attempts: a store that is down is a 503 within about 3 s of backoff, not 15 s of it
    return boto3.session.Session().client(
        "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                      max_pool_connections=32))


UNAVAILABLE_CODES = frozenset({"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown",
                               "RequestTimeout"})
"""S3 answers that mean "not now" rather than "no"."""


def unreachable(e: Exception) -> bool:
    """Whether ``e`` says the object store cannot be reached now (no connection, a timeout, a 5xx answer)."""
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:
        return False
    return isinstance(e, (BotoConnectionError, HTTPClientError)) or _code(e) in UNAVAILABLE_CODES


def _code(e: Exception) -> str:
    response = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) or str(response.get("ResponseMetadata", {})
                                                                 .get("HTTPStatusCode", ""))


@dataclass(frozen=True)
class ObjectRef:
    """An object this process wrote in a write transaction: deleted again (``unlink``) if that transaction fails,
    like a file the directory store wrote (``Path.unlink``)."""

    blobs: S3BlobStore
    sha256: str
    suffix: str

    def unlink(self, missing_ok: bool = True) -> None:
        self.blobs.unlink(self.sha256, self.suffix)

    @property
    def parent(self) -> ObjectRef:  # the directory store removes an emptied folder; an object store has none
        return self

    def rmdir(self) -> None:
        return None


class S3BlobStore:
    """The content files of a shared library under ``s3://bucket/prefix`` (a local read cache beside)."""

    def __init__(self, url: str, *, cache_dir: Path | None = None, client: Any = None) -> None:
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_s3_url(url)
        self.cache_dir = cache_dir
        """Where read objects are kept (immutable, so a copy never goes stale); ``None``: no cache."""
        self._client = client
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client (thread-safe; made on first use)."""
        with self._lock:
            if self._client is None:
                self._client = _client()
            return self._client

    # --- names -------------------------------------------------------------------------------------------

    def key(self, sha256: str, suffix: str) -> str:
        return f"{self.prefix}blobs/{sha256[:2]}/{sha256}{suffix}"

    def object_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def path(self, sha256: str, suffix: str) -> Path:
        """Where a read copy of the object lives in the local cache (what a voice's files show as their path)."""
        base = self.cache_dir if self.cache_dir is not None else Path("s3-cache")
        return base / self.bucket / self.key(sha256, suffix)

    def relative(self, path: Path | str) -> str:
        """The ``s3://`` URL of an object (given its cache path or its key), for messages."""
        text = str(path)
        marker = f"{self.prefix}blobs/"
        return self.object_url(marker + text.split(marker, 1)[1]) if marker in text else text

    def _error(self, e: Exception, action: str, key: str = "") -> LibraryError:
        where = self.object_url(key) if key else f"s3://{self.bucket}/{self.prefix}"
        code = _code(e)
        if code in ("NoSuchBucket", "404") and not key:
            return LibraryError(f"{where}: the bucket {self.bucket!r} does not exist; create it first")
        if unreachable(e):
            return LibraryUnavailableError(f"cannot {action} {where}: the object store cannot be reached now ({e}); "
                                           "check that it is up and AWS_ENDPOINT_URL is right")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return LibraryWriteError(f"cannot {action} {where}: access denied ({code}); check AWS_ACCESS_KEY_ID and "
                                     "AWS_SECRET_ACCESS_KEY")
        return LibraryWriteError(f"cannot {action} {where}: {e}")

    # --- the BlobStore interface -------------------------------------------------------------------------

    def ensure_dirs(self) -> None:
        """Check that the bucket can be reached (there are no directories to create)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            if isinstance(e, LibraryError):
                raise
            raise self._error(e, "reach") from e

    def holds_content(self) -> bool:
        """Whether any object lies under ``<prefix>blobs/``."""
        try:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}blobs/", MaxKeys=1)
        except Exception:
            return True  # unknown: never treat the library as new
        return bool(page.get("KeyCount") or page.get("Contents"))

    def exists(self, sha256: str, suffix: str, size: int | None = None) -> bool:
        """Whether the object is there (with ``size`` bytes, when given)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(sha256, suffix))
        except Exception as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(e, "read", self.key(sha256, suffix)) from e
        return size is None or int(head.get("ContentLength", -1)) == size

    def write(self, data: bytes, suffix: str) -> tuple[str, Path]:
        """Store ``data`` as one object; returns ``(sha256, cache path)``.  Rewrites an object already there (same
        bytes, so readers never see a change)."""
        digest = sha256_bytes(data)
        key = self.key(digest, suffix)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as e:
            raise self._error(e, "write", key) from e
        return digest, self.path(digest, suffix)

    def _get(self, key: str, limit: int | None) -> bytes:
        kwargs = {"Range": f"bytes=0-{limit}"} if limit is not None else {}
        body = self.client.get_object(Bucket=self.bucket, Key=key, **kwargs)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def read(self, sha256: str, suffix: str, size: int) -> bytes:
        """The object's ``size`` bytes (from the local cache when a verified copy is there).  ``LibraryError``
        when it is missing, has another size or another sha256."""
        cached = self.path(sha256, suffix) if self.cache_dir is not None else None
        if cached is not None and cached.is_file() and not cached.is_symlink():
            data = cached.read_bytes()
            if len(data) == size and sha256_bytes(data) == sha256:
                return data
        key = self.key(sha256, suffix)
        problem = None
        try:
            data = self._get(key, size)  # never more than size + 1 bytes
        except Exception as e:
            if _code(e) not in ("404", "NoSuchKey", "NotFound", "InvalidRange", "416"):
                raise self._error(e, "read", key) from e
            data, problem = b"", "is missing" if _code(e) not in ("InvalidRange", "416") else "is empty"
        if problem is None and len(data) != size:
            problem = f"has {len(data) if len(data) <= size else 'more than ' + str(size)} bytes, expected {size}"
        if problem is None and sha256_bytes(data) != sha256:
            problem = "is damaged (its sha256 differs)"
        if problem is not None:
            raise ContentMissingError(f"{self.object_url(key)} {problem}")
        if cached is not None:
            self._keep(cached, data)
        return data

    def _keep(self, cached: Path, data: bytes) -> None:
        """Keep a read copy: renamed into place whole, but not fsynced (a copy a crash tears is caught by its
        sha256 on the next read and fetched again), which would cost a cache miss a few milliseconds."""
        tmp = None
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{cached.name}.", suffix=".tmp", dir=cached.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, cached)
            tmp = None
        except OSError:  # a cache is an optimisation
            pass
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def verify(self, sha256: str, suffix: str, size: int | None = None) -> str | None:
        """``None`` when the object is present and intact, else what is wrong with it."""
        key = self.key(sha256, suffix)
        try:
            data = self._get(key, size)
        except Exception as e:
            code = _code(e)
            if code in ("404", "NoSuchKey", "NotFound"):
                return f"{self.object_url(key)} is missing"
            if code in ("InvalidRange", "416"):
                return f"{self.object_url(key)} is empty, expected {size} bytes"
            return f"{self.object_url(key)} is unreadable ({code or e})"
        if size is not None and len(data) != size:
            return f"{self.object_url(key)} has {len(data)} bytes, expected {size}"
        actual = sha256_bytes(data)
        if actual != sha256:
            return f"{self.object_url(key)} is damaged (its sha256 is {actual[:16]}...)"
        return None

    def unlink(self, sha256: str, suffix: str) -> bool:
        """Delete an object (and its cached copy); ``True`` when there was one."""
        if self.cache_dir is not None:
            self.path(sha256, suffix).unlink(missing_ok=True)
        if not self.exists(sha256, suffix):
            return False
        self.delete_key(self.key(sha256, suffix))
        return True

    def delete_key(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            raise self._error(e, "delete", key) from e

    def files(self) -> Iterator[tuple[str, str, str]]:
        """Every object under ``<prefix>blobs/`` as ``(sha256, suffix, key)``; keys that are not blobs get sha256
        ``""``."""
        base = f"{self.prefix}blobs/"
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = str(obj["Key"])
                    fan, _, name = key[len(base):].partition("/")
                    stem, dot, ext = name.partition(".")
                    good = len(fan) == 2 and len(stem) == 64 and stem.startswith(fan) and set(stem) <= _HEX
                    yield (stem, f"{dot}{ext}", key) if good else ("", "", key)
        except Exception as e:
            if isinstance(e, LibraryError):
                raise
            raise self._error(e, "list") from e

    def stale_temp_files(self, **_: object) -> list[Path]:
        """None: an object appears whole or not at all."""
        return []


__all__ = ["ObjectRef", "S3BlobStore", "is_s3_url", "parse_s3_url"]
