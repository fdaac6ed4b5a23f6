"""Blobs in any S3 API (AWS S3, SeaweedFS, Ceph RGW, Garage) over aiobotocore.

Objects up to ``multipart_threshold_bytes`` are sent with one PutObject; larger
ones as a multipart upload with at most one part in flight while the next is
read, so memory stays near two part sizes whatever the object size. A failed
multipart upload is aborted, so nothing appears under the key. The ``prefix``
setting is prepended verbatim to every key.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager, suppress
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from skypacs.config import S3StorageSettings
from skypacs.errors import DependencyUnavailable, PayloadTooLarge, StorageFull
from skypacs.storage.base import (
    BlobInfo,
    BlobNotFound,
    BlobReader,
    InvalidRange,
    PutResult,
    check_range_bounds,
    empty_chunks,
    resolve_range,
    validate_key,
    validate_prefix,
    validate_storage_class,
)

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.literals import StorageClassType
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

DEFAULT_STORAGE_CLASS = "STANDARD"
STORAGE_CLASS_METADATA = "skypacs-storage-class"
MAX_PARTS = 10_000
MAX_SINGLE_COPY_BYTES = 5 * 1024**3
COPY_PART_BYTES = 1024**3
HASH_INLINE_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
#: GETs one :meth:`S3BlobStore.open_many` keeps in flight.
OPEN_CONCURRENCY = 8
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_FULL_CODES = frozenset(
    {"EntityTooLarge", "QuotaExceeded", "XMinioStorageFull", "InsufficientStorage", "StorageFull"}
)
_ACCESS_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken"}
)
_OUTAGE_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "NoSuchBucket"}
)
_TRANSPORT_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError, aiohttp.ClientError)


def client_config(settings: S3StorageSettings) -> AioConfig:
    """Client options that work across S3 implementations.

    Checksums are only sent when an operation requires them: several S3-compatible
    servers reject the aws-chunked trailers newer botocore sends by default.
    """
    return AioConfig(
        region_name=settings.region,
        signature_version="s3v4",
        s3={"addressing_style": settings.addressing_style},
        max_pool_connections=settings.max_pool_connections,
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": 3, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def error_code(exc: ClientError) -> tuple[str, int]:
    """The S3 error code and HTTP status of a client error."""
    response: Any = exc.response
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return code, status


def parse_content_range(value: str | None) -> tuple[int, int, int] | None:
    """``(first, end_exclusive, total)`` from ``bytes first-last/total``."""
    match = _CONTENT_RANGE.fullmatch(value.strip()) if value else None
    if match is None:
        return None
    first, last, total = (int(group) for group in match.groups())
    return first, last + 1, total


def class_of(item: Mapping[str, Any]) -> str:
    """The storage class S3 reports; an absent class means ``STANDARD``."""
    return str(item.get("StorageClass") or DEFAULT_STORAGE_CLASS)


async def hash_update(hasher: Any, data: bytes) -> None:
    """Hash ``data``, off the event loop when it is large (hashlib drops the GIL)."""
    if len(data) <= HASH_INLINE_BYTES:
        hasher.update(data)
    else:
        await asyncio.to_thread(hasher.update, data)


async def fill(iterator: AsyncIterator[bytes], buffer: bytearray, limit: int) -> bool:
    """Read chunks into ``buffer`` until it holds more than ``limit`` bytes.

    Returns ``True`` when the iterator is exhausted.
    """
    while len(buffer) <= limit:
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return True
        buffer += chunk
    return False


def cut(buffer: bytearray, size: int) -> bytes:
    """Remove and return the first ``size`` bytes of ``buffer``."""
    part = bytes(memoryview(buffer)[:size])
    del buffer[:size]
    return part


class S3BlobStore:
    """A :class:`~skypacs.storage.base.BlobStore` over one S3 bucket.

    Use :meth:`connect` (or ``async with``) to open the client; it stays open
    until :meth:`aclose`.
    """

    file_backed = False

    def __init__(self, settings: S3StorageSettings, *, read_chunk_bytes: int) -> None:
        if not settings.bucket:
            raise ValueError("an S3 blob store needs a bucket")
        self._settings = settings
        self._bucket: str = settings.bucket
        self._prefix = settings.prefix
        self._chunk = read_chunk_bytes
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None

    @classmethod
    async def connect(cls, settings: S3StorageSettings, *, read_chunk_bytes: int) -> S3BlobStore:
        store = cls(settings, read_chunk_bytes=read_chunk_bytes)
        try:
            await store.start()
        except BaseException:
            await store.aclose()
            raise
        return store

    async def start(self) -> None:
        """Open the client and, when configured, create the bucket."""
        settings = self._settings
        key_id = settings.access_key_id
        secret = settings.secret_access_key
        creator = get_session().create_client(
            "s3",
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=key_id.get_secret_value() if key_id is not None else None,
            aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
            config=client_config(settings),
        )
        self._client = cast("S3Client", await self._stack.enter_async_context(creator))
        if settings.create_bucket:
            await self._ensure_bucket()

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def _s3(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("the S3 blob store is not connected")
        return self._client

    def _name(self, key: str) -> str:
        return self._prefix + validate_key(key)

    @contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Translate botocore and transport errors into SkyPACS errors."""
        try:
            yield
        except ClientError as exc:
            mapped = self._translate(exc, key)
            if mapped is None:
                raise
            raise mapped from exc
        except NoCredentialsError as exc:
            raise DependencyUnavailable("no S3 credentials are configured") from exc
        except _TRANSPORT_ERRORS as exc:
            raise DependencyUnavailable(f"S3 endpoint unreachable ({type(exc).__name__})") from exc

    def _translate(self, exc: ClientError, key: str | None) -> Exception | None:
        code, status = error_code(exc)
        if key is not None and (code in _MISSING_CODES or (status == 404 and not code)):
            return BlobNotFound(f"no blob {key!r}")
        if code == "InvalidRange" or status == 416:
            return InvalidRange("byte range outside the object")
        if code in _FULL_CODES or status == 507:
            return StorageFull(f"S3 storage is full ({code or status})")
        if code in _ACCESS_CODES:
            return DependencyUnavailable(f"S3 refused access to bucket {self._bucket!r} ({code})")
        if code in _OUTAGE_CODES or status >= 500:
            return DependencyUnavailable(f"S3 bucket {self._bucket!r} unavailable ({code})")
        return None

    async def _ensure_bucket(self) -> None:
        try:
            with self._errors():
                await self._s3.head_bucket(Bucket=self._bucket)
            return
        except ClientError as exc:
            if error_code(exc)[1] != 404:
                raise
        args: dict[str, Any] = {"Bucket": self._bucket}
        if self._settings.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self._settings.region}
        try:
            with self._errors():
                await self._s3.create_bucket(**args)
        except ClientError as exc:
            if error_code(exc)[0] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        storage_class: str | None = None,
        fresh: bool = False,  # an upload becomes visible only once complete anyway
    ) -> PutResult:
        name = self._name(key)
        extra: dict[str, Any] = {}
        if storage_class is not None:
            extra["StorageClass"] = validate_storage_class(storage_class)
        iterator = aiter(chunks)
        buffer = bytearray()
        hasher = hashlib.sha256()
        threshold = self._settings.multipart_threshold_bytes
        if await fill(iterator, buffer, threshold):
            body = bytes(buffer)
            buffer.clear()
            await hash_update(hasher, body)
            with self._errors(key):
                await self._s3.put_object(
                    Bucket=self._bucket, Key=name, Body=body, ContentLength=len(body), **extra
                )
            return PutResult(key=key, size=len(body), sha256=hasher.digest())
        size = await self._put_multipart(name, iterator, buffer, hasher, extra)
        return PutResult(key=key, size=size, sha256=hasher.digest())

    async def _put_multipart(
        self,
        name: str,
        iterator: AsyncIterator[bytes],
        buffer: bytearray,
        hasher: Any,
        extra: dict[str, Any],
    ) -> int:
        with self._errors():
            created = await self._s3.create_multipart_upload(Bucket=self._bucket, Key=name, **extra)
        upload_id = created["UploadId"]
        try:
            parts, size = await self._send_parts(name, upload_id, iterator, buffer, hasher)
            with self._errors():
                await self._s3.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            await self._abort(name, upload_id)
            raise
        return size

    async def _send_parts(
        self,
        name: str,
        upload_id: str,
        iterator: AsyncIterator[bytes],
        buffer: bytearray,
        hasher: Any,
    ) -> tuple[builtins.list[CompletedPartTypeDef], int]:
        """Upload parts in order, reading the next part while one is in flight."""
        part_size = self._settings.multipart_part_size_bytes
        parts: builtins.list[CompletedPartTypeDef] = []
        in_flight: asyncio.Task[CompletedPartTypeDef] | None = None
        size = number = 0
        exhausted = False
        try:
            while buffer or not exhausted:
                if not exhausted:
                    exhausted = await fill(iterator, buffer, part_size - 1)
                part = cut(buffer, part_size)
                if not part:
                    break
                await hash_update(hasher, part)
                size += len(part)
                number += 1
                if number > MAX_PARTS:
                    raise PayloadTooLarge(f"object exceeds {MAX_PARTS} parts of {part_size} bytes")
                if in_flight is not None:
                    parts.append(await in_flight)
                in_flight = asyncio.create_task(self._upload_part(name, upload_id, number, part))
            if in_flight is not None:
                parts.append(await in_flight)
                in_flight = None
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()
                with suppress(BaseException):
                    await in_flight
        return parts, size

    async def _upload_part(
        self, name: str, upload_id: str, number: int, body: bytes
    ) -> CompletedPartTypeDef:
        with self._errors():
            response = await self._s3.upload_part(
                Bucket=self._bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentLength=len(body),
            )
        return {"PartNumber": number, "ETag": response["ETag"]}

    async def _abort(self, name: str, upload_id: str) -> None:
        """Abort a multipart upload; failures here must not hide the original error."""
        with suppress(Exception):
            await self._s3.abort_multipart_upload(Bucket=self._bucket, Key=name, UploadId=upload_id)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> BlobReader:
        name = self._name(key)
        check_range_bounds(start, end)
        if end == start:
            return await self._empty_range(key, start, end)
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": name}
        if start > 0 or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with self._errors(key):
                response = await self._s3.get_object(**args)
        except InvalidRange:
            return await self._empty_range(key, start, end)
        body = response["Body"]
        try:
            size, first, last, skip = self._locate(response, start, end)
        except BaseException:
            body.close()
            raise

        async def close() -> None:
            body.close()

        chunks = self._body_chunks(key, body, skip, last - first)
        return BlobReader(size=size, start=first, end=last, chunks=chunks, on_close=close)

    async def open_many(self, keys: Sequence[str]) -> builtins.list[BlobReader]:
        """Readers of the whole objects ``keys``; their GETs run concurrently (at most
        :data:`OPEN_CONCURRENCY` at once), so a group costs about one round trip.
        If any fails, the others are closed and its error is raised."""
        limit = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def one(key: str) -> BlobReader:
            async with limit:
                return await self.open(key)

        opening = [asyncio.ensure_future(one(key)) for key in keys]
        try:
            await asyncio.gather(*opening)
        except BaseException:
            await asyncio.wait(opening)
            for task in opening:
                if not task.cancelled() and task.exception() is None:
                    await task.result().aclose()
            raise
        return [task.result() for task in opening]

    async def _empty_range(self, key: str, start: int, end: int | None) -> BlobReader:
        """An empty range at ``start``, valid only when ``start`` is within the object."""
        info = await self.head(key)
        first, last = resolve_range(info.size, start, end)
        if last > first:
            raise InvalidRange("byte range outside the object")
        return BlobReader(size=info.size, start=first, end=first, chunks=empty_chunks())

    @staticmethod
    def _locate(response: Any, start: int, end: int | None) -> tuple[int, int, int, int]:
        """``(size, first, end, bytes to skip)`` for a GetObject response.

        A server that ignores ``Range`` answers with the whole object; the reader
        then skips to ``start`` itself.
        """
        parsed = parse_content_range(response.get("ContentRange"))
        if parsed is not None:
            first, last, total = parsed
            return total, first, last, 0
        size = int(response["ContentLength"])
        first, last = resolve_range(size, start, end)
        return size, first, last, first

    async def _body_chunks(
        self, key: str, body: StreamingBody, skip: int, remaining: int
    ) -> AsyncIterator[bytes]:
        """Re-chunk the response body into ``read_chunk_bytes`` pieces.

        A piece that arrives whole is passed on as is; smaller ones are joined
        (one copy).
        """
        with self._errors(key):
            while skip > 0:
                skipped = await body.read(min(skip, self._chunk))
                if not skipped:
                    raise DependencyUnavailable("S3 response ended before the range")
                skip -= len(skipped)
            pending: builtins.list[bytes] = []
            held = 0
            while remaining > 0:
                data = await body.read(min(self._chunk - held, remaining))
                if not data:
                    raise DependencyUnavailable("S3 response ended before the range end")
                pending.append(data)
                held += len(data)
                remaining -= len(data)
                if held >= self._chunk or remaining == 0:
                    yield pending[0] if len(pending) == 1 else b"".join(pending)
                    pending, held = [], 0

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        reader = await self.open(key, start, end)
        return await reader.read_all()

    async def head(self, key: str) -> BlobInfo:
        name = self._name(key)
        with self._errors(key):
            response = await self._s3.head_object(Bucket=self._bucket, Key=name)
        return BlobInfo(
            key=key,
            size=int(response["ContentLength"]),
            storage_class=class_of(response),
            modified=response.get("LastModified"),
        )

    async def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            with self._errors(key):
                await self._s3.delete_object(Bucket=self._bucket, Key=name)
        except BlobNotFound:
            return

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """ListObjectsV2 pages in key order; keys outside the key syntax are skipped."""
        full_prefix = self._prefix + validate_prefix(prefix)
        paginator = self._s3.get_paginator("list_objects_v2")
        with self._errors():
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self._prefix) :]
                    try:
                        validate_key(key)
                    except ValueError:
                        continue
                    yield BlobInfo(
                        key=key,
                        size=int(item["Size"]),
                        storage_class=class_of(item),
                        modified=item.get("LastModified"),
                    )

    async def set_storage_class(self, key: str, storage_class: str) -> None:
        """Copy the object onto itself with the new class.

        The copy replaces metadata (keeping the user metadata and content type and
        adding a class marker): S3 and SeaweedFS reject a copy onto itself that
        changes nothing else.
        """
        name = self._name(key)
        target = cast("StorageClassType", validate_storage_class(storage_class))
        with self._errors(key):
            current = await self._s3.head_object(Bucket=self._bucket, Key=name)
        metadata = {**current.get("Metadata", {}), STORAGE_CLASS_METADATA: storage_class}
        extra: dict[str, Any] = {"StorageClass": target, "Metadata": metadata}
        if current.get("ContentType"):
            extra["ContentType"] = current["ContentType"]
        size = int(current["ContentLength"])
        if size > MAX_SINGLE_COPY_BYTES:
            await self._copy_multipart(key, name, size, extra)
            return
        with self._errors(key):
            await self._s3.copy_object(
                Bucket=self._bucket,
                Key=name,
                CopySource={"Bucket": self._bucket, "Key": name},
                MetadataDirective="REPLACE",
                **extra,
            )

    async def _copy_multipart(self, key: str, name: str, size: int, extra: dict[str, Any]) -> None:
        """Copy an object above the 5 GiB CopyObject limit part by part."""
        with self._errors(key):
            created = await self._s3.create_multipart_upload(Bucket=self._bucket, Key=name, **extra)
        upload_id = created["UploadId"]
        parts: builtins.list[CompletedPartTypeDef] = []
        try:
            with self._errors(key):
                for number, first in enumerate(range(0, size, COPY_PART_BYTES), start=1):
                    last = min(first + COPY_PART_BYTES, size) - 1
                    copied = await self._s3.upload_part_copy(
                        Bucket=self._bucket,
                        Key=name,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": self._bucket, "Key": name},
                        CopySourceRange=f"bytes={first}-{last}",
                    )
                    parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
                await self._s3.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            await self._abort(name, upload_id)
            raise

    async def ping(self) -> None:
        try:
            with self._errors():
                await self._s3.head_bucket(Bucket=self._bucket)
        except ClientError as exc:
            code, status = error_code(exc)
            raise DependencyUnavailable(
                f"S3 bucket {self._bucket!r} is not usable ({code or status})"
            ) from exc

    async def aclose(self) -> None:
        self._client = None
        await self._stack.aclose()

    async def __aenter__(self) -> S3BlobStore:
        if self._client is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
