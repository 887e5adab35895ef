"""Object storage for media: one small async interface, chosen by URL.

- `file:///abs/path`: a directory on local disk (the default for one machine).
- `s3://bucket/prefix`: any S3-compatible store through aiobotocore (AWS S3, Cloudflare R2, MinIO);
  `endpoint_url`, `region`, `access_key_id`, `secret_access_key`, `session_token` and
  `addressing_style` are passed to `open_storage` as keyword arguments.

Keys are relative, slash-separated paths ("jobs/<id>/out.png"), validated the same way for both
backends so that a key valid on one is valid on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

CHUNK_SIZE = 64 * 1024
MAX_KEY_BYTES = 1024


class StorageError(Exception):
    """Base class of storage failures."""


class InvalidKey(StorageError, ValueError):
    """A key that could name something outside the store, or that S3 and disks disagree about."""


class ObjectNotFound(StorageError, LookupError):
    """No object under that key."""


class ObjectTooLarge(StorageError):
    """A streamed upload passed its size cap; nothing was stored."""


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise InvalidKey.

    Segments may not be empty, "." or "..", nor start with "." (the file backend's temporary
    files do), and keys may not be absolute or contain backslashes or control characters.
    """
    if not key or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"key must be 1 to {MAX_KEY_BYTES} bytes")
    if key.startswith("/") or "\\" in key:
        raise InvalidKey(f"key must be relative and use '/' separators: {key!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise InvalidKey(f"key contains control characters: {key!r}")
    if any(not segment or segment.startswith(".") for segment in key.split("/")):
        raise InvalidKey(f"key segments must be non-empty and not start with '.': {key!r}")
    return key


@dataclass(frozen=True)
class PresignedPost:
    """POST a multipart form to `url`: every one of `fields`, then the file as `file`."""

    url: str
    fields: dict[str, str]


class Storage(ABC):
    """Async object storage. Implementations are safe to share between tasks."""

    @abstractmethod
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> int:
        """Store the concatenated chunks and return their size; ObjectTooLarge past `max_bytes`."""

    @abstractmethod
    async def get(self, key: str) -> bytes: ...

    @abstractmethod
    def iter(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Stream an object's bytes; ObjectNotFound is raised on the first iteration."""

    @abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abstractmethod
    async def size(self, key: str) -> int | None:
        """The object's size in bytes, read without its content; None when there is none."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove an object; deleting a missing key is not an error."""

    @abstractmethod
    async def presigned_get_url(self, key: str, expires_s: int) -> str | None:
        """A URL anyone can GET until it expires, or None when the caller must sign its own."""

    @abstractmethod
    async def presigned_post(self, key: str, expires_s: int, content_type: str,
                             max_bytes: int) -> PresignedPost | None:
        """A form POST that stores one object at `key`, of `content_type` and at most
        `max_bytes`, until `expires_s` from now: the storage itself enforces all three (an S3
        POST policy). None when the storage has no such thing (file storage)."""

    async def create(self) -> bool:
        """Make the place objects go (a directory, a bucket) if it is missing: True when
        this made it. Deployments run it once (`genrail init`); the services never do."""
        return False

    async def close(self) -> None:
        return None


class FileStorage(Storage):
    """Objects as files under `root`; writes land atomically (temporary file, fsync, rename)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    async def create(self) -> bool:
        made = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        return made

    def path_for(self, key: str) -> Path:
        path = self.root / validate_key(key)
        # Resolving catches symlinks inside the root that point out of it.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidKey(f"key escapes the storage root: {key!r}")
        return path

    def _open_temp(self, path: Path) -> tuple[int, str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        with memoryview(data) as view:
            while view:
                view = view[os.write(fd, view) :]

    @staticmethod
    def _commit(fd: int, temp_name: str, path: Path) -> None:
        os.fsync(fd)
        os.close(fd)
        os.replace(temp_name, path)
        # Persist the rename itself, not only the file's bytes.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def _discard(fd: int, temp_name: str) -> None:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        fd, temp_name = self._open_temp(path)
        try:
            self._write_all(fd, data)
            self._commit(fd, temp_name, path)
        except BaseException:
            self._discard(fd, temp_name)
            raise

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write_atomically, self.path_for(key), data)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> int:
        path = self.path_for(key)
        fd, temp_name = await asyncio.to_thread(self._open_temp, path)
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectTooLarge(f"{key!r} is larger than {max_bytes} bytes")
                await asyncio.to_thread(self._write_all, fd, chunk)
            await asyncio.to_thread(self._commit, fd, temp_name, path)
        except BaseException:
            await asyncio.to_thread(self._discard, fd, temp_name)
            raise
        return size

    async def get(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    async def iter(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def size(self, key: str) -> int | None:
        path = self.path_for(key)
        try:
            stat = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            return None
        return stat.st_size if path.is_file() else None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_for(key).unlink, missing_ok=True)

    async def presigned_get_url(self, key: str, expires_s: int) -> str | None:
        validate_key(key)
        return None

    async def presigned_post(self, key: str, expires_s: int, content_type: str,
                             max_bytes: int) -> PresignedPost | None:
        validate_key(key)
        return None


@functools.cache
def _aio_session() -> Any:
    """One botocore session per process: it caches the service models clients are built from.

    Imported on first use: aiobotocore is slow to import and file storage does without it."""
    from aiobotocore.session import get_session

    return get_session()


class S3Storage(Storage):
    """Objects in an S3-compatible bucket under an optional key prefix.

    The aiobotocore client is created on first use (so the store can be built outside a running
    event loop) and released by `close()`.
    """

    # S3 multipart parts must be at least 5 MiB, except the last one.
    PART_SIZE = 8 * 1024 * 1024

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        addressing_style: str | None = None,
    ):
        self.bucket = bucket
        self.prefix = validate_key(prefix) if prefix else ""
        self._client_options = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "aws_session_token": session_token,
        }
        self._addressing_style = addressing_style
        self._client: Any = None
        self._exit_stack = contextlib.AsyncExitStack()
        self._client_lock = asyncio.Lock()

    async def _s3(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                from aiobotocore.config import AioConfig

                s3_config = {"addressing_style": self._addressing_style} if self._addressing_style else None
                config = AioConfig(signature_version="s3v4", s3=s3_config)
                self._client = await self._exit_stack.enter_async_context(
                    _aio_session().create_client("s3", config=config, **self._client_options)
                )
            return self._client

    async def create(self) -> bool:
        from botocore.exceptions import ClientError

        s3 = await self._s3()
        try:
            await s3.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        await s3.create_bucket(Bucket=self.bucket)
        return True

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _is_not_found(exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
            "NoSuchKey",
            "404",
            "NotFound",
        )

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        object_key = self._object_key(key)
        s3 = await self._s3()
        await s3.put_object(Bucket=self.bucket, Key=object_key, Body=data, ContentType=content_type)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> int:
        object_key = self._object_key(key)
        s3 = await self._s3()
        buffer, size = bytearray(), 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        async def upload_part() -> None:
            answer = await s3.upload_part(
                Bucket=self.bucket,
                Key=object_key,
                UploadId=upload_id,
                PartNumber=len(parts) + 1,
                Body=bytes(buffer),
            )
            parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})
            buffer.clear()

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectTooLarge(f"{key!r} is larger than {max_bytes} bytes")
                buffer += chunk
                if len(buffer) >= self.PART_SIZE:
                    if upload_id is None:
                        created = await s3.create_multipart_upload(
                            Bucket=self.bucket, Key=object_key, ContentType=content_type
                        )
                        upload_id = created["UploadId"]
                    await upload_part()
            if upload_id is None:
                await s3.put_object(
                    Bucket=self.bucket, Key=object_key, Body=bytes(buffer), ContentType=content_type
                )
            else:
                if buffer:
                    await upload_part()
                await s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await s3.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
            raise
        return size

    async def _get_object(self, key: str) -> dict[str, Any]:
        object_key = self._object_key(key)
        s3 = await self._s3()
        try:
            return await s3.get_object(Bucket=self.bucket, Key=object_key)
        except Exception as exc:
            if self._is_not_found(exc):
                raise ObjectNotFound(key) from exc
            raise

    async def get(self, key: str) -> bytes:
        answer = await self._get_object(key)
        async with answer["Body"] as body:
            return await body.read()

    async def iter(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        answer = await self._get_object(key)
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(chunk_size):
                yield chunk

    async def size(self, key: str) -> int | None:
        s3 = await self._s3()
        try:
            head = await s3.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except Exception as exc:
            if self._is_not_found(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        object_key = self._object_key(key)
        s3 = await self._s3()
        try:
            await s3.head_object(Bucket=self.bucket, Key=object_key)
        except Exception as exc:
            if self._is_not_found(exc):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        s3 = await self._s3()
        await s3.delete_object(Bucket=self.bucket, Key=object_key)

    async def presigned_get_url(self, key: str, expires_s: int) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._object_key(key)}
        s3 = await self._s3()
        return await s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)

    async def presigned_post(self, key: str, expires_s: int, content_type: str,
                             max_bytes: int) -> PresignedPost | None:
        s3 = await self._s3()
        post = await s3.generate_presigned_post(
            Bucket=self.bucket, Key=self._object_key(key), ExpiresIn=expires_s,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]])
        return PresignedPost(url=post["url"], fields=post["fields"])

    async def close(self) -> None:
        async with self._client_lock:
            self._client = None
            await self._exit_stack.aclose()


def open_storage(url: str, **s3_options: Any) -> Storage:
    """The storage a URL names: `file:///abs/path` or `s3://bucket/prefix` (see the module doc)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file storage URL must be file:///absolute/path, got {url!r}")
        path = unquote(parsed.path)
        if not os.path.isabs(path):
            raise ValueError(f"file storage URL needs an absolute path, got {url!r}")
        if s3_options:
            raise ValueError(f"options {sorted(s3_options)} only apply to s3:// storage")
        return FileStorage(path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"s3 storage URL needs a bucket: {url!r}")
        return S3Storage(parsed.netloc, unquote(parsed.path).strip("/"), **s3_options)
    raise ValueError(f"unsupported storage URL scheme {parsed.scheme!r} in {url!r}")
