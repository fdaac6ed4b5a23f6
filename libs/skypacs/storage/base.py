"""The blob store contract shared by every backend.

A blob store holds immutable byte objects under validated keys. Writes are
streamed and atomic: a reader sees either the previous object or the complete
new one, never a partial write. Reads are streamed by byte range, with ranges
half-open ``[start, end)`` so that the HTTP layer can map them onto ``Range``
requests (PS3.18 section 8.3.5 lets clients ask for byte ranges of bulk data
and frames).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeAlias, runtime_checkable

from skypacs.errors import BadRequest, NotFound

MAX_KEY_LENGTH = 512
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
KEY_PATTERN = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
PREFIX_PATTERN = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*/?")
STORAGE_CLASS_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class BlobNotFound(NotFound):
    """No object exists under the requested key."""

    title = "blob not found"


class InvalidRange(BadRequest):
    """A byte range outside the object; the HTTP layer answers 416."""

    title = "invalid byte range"


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a completed write stored: its size and raw 32-byte SHA-256 digest."""

    key: str
    size: int
    sha256: bytes


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """Metadata of one stored object.

    ``storage_class`` is ``None`` when no class was ever recorded for the object
    (filesystem default); S3 reports its class, ``STANDARD`` by default.
    """

    key: str
    size: int
    storage_class: str | None
    modified: datetime | None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise ``ValueError``.

    Keys are ``/``-separated segments of ``[A-Za-z0-9._-]`` that each start with
    a letter or digit: no empty, ``.`` or ``..`` segment, no leading or trailing
    ``/``, at most 512 characters. Paths and object names are only ever built
    from keys that pass this check.
    """
    if len(key) > MAX_KEY_LENGTH or not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"invalid blob key: {key[:80]!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if some valid key could start with it, else ``ValueError``."""
    if prefix and (len(prefix) > MAX_KEY_LENGTH or not PREFIX_PATTERN.fullmatch(prefix)):
        raise ValueError(f"invalid blob key prefix: {prefix[:80]!r}")
    return prefix


def validate_storage_class(storage_class: str) -> str:
    """Return ``storage_class`` if it looks like a class name (``STANDARD_IA``)."""
    if not STORAGE_CLASS_PATTERN.fullmatch(storage_class):
        raise ValueError(f"invalid storage class: {storage_class[:80]!r}")
    return storage_class


def check_range_bounds(start: int, end: int | None) -> None:
    """Reject ranges that are invalid whatever the object size."""
    if start < 0 or (end is not None and end < start):
        raise InvalidRange(f"invalid byte range [{start}, {end})")


def resolve_range(size: int, start: int, end: int | None) -> tuple[int, int]:
    """Resolve ``[start, end)`` against an object of ``size`` bytes.

    ``end`` of ``None`` or past the object is clamped to ``size`` (as HTTP clamps
    a last-byte-pos, RFC 9110 section 14.1.2). ``start == size`` is a valid empty
    range; ``start > size`` or a negative bound raises :class:`InvalidRange`.
    """
    check_range_bounds(start, end)
    if start > size:
        raise InvalidRange(f"range start {start} is past the object end ({size} bytes)")
    resolved_end = size if end is None else min(end, size)
    return start, resolved_end


#: A piece of object bytes as read: ``bytes``, or a ``memoryview`` of a buffer
#: the read filled directly (no copy), never written to afterwards.
Chunk: TypeAlias = bytes | memoryview


class BlobReader:
    """A streamed byte range of one object: an async iterable of :data:`Chunk`.

    ``size`` is the whole object's size; ``start``/``end`` the resolved range.
    ``descriptor`` is the open file the range lies in, when the store has one
    (the filesystem store): a server may hand ``[start, end)`` of it to the
    kernel (``sendfile``) instead of iterating the chunks. The reader releases
    its file or connection when iteration ends, on error, or on :meth:`aclose`
    (also called when used as an async context manager).
    """

    def __init__(
        self,
        *,
        size: int,
        start: int,
        end: int,
        chunks: AsyncIterator[Chunk],
        on_close: Callable[[], Awaitable[None]] | None = None,
        descriptor: int | None = None,
    ) -> None:
        self.size = size
        self.descriptor = descriptor
        self.start = start
        self.end = end
        self._chunks = chunks
        self._on_close = on_close
        self._closed = False

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Chunk:
        if self._closed:
            raise StopAsyncIteration
        try:
            return await anext(self._chunks)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            closer = getattr(self._chunks, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            if self._on_close is not None:
                await self._on_close()

    async def read_all(self) -> bytes:
        """Collect the remaining range into memory (for small ranges only)."""
        async with self:
            return b"".join([chunk async for chunk in self])

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _NoChunks:
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Chunk:
        raise StopAsyncIteration


def empty_chunks() -> AsyncIterator[Chunk]:
    """An iterator of no chunks, for empty ranges."""
    return _NoChunks()


@runtime_checkable
class BlobStore(Protocol):
    """Where SkyPACS keeps object bytes (filesystem or any S3 API)."""

    #: Whether every reader carries the object's open file (``BlobReader.descriptor``),
    #: so that a server may hand ranges of it to the kernel (``sendfile``).
    file_backed: bool

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        storage_class: str | None = None,
        fresh: bool = False,
    ) -> PutResult:
        """Stream ``chunks`` to ``key`` atomically; on any error nothing new is left.

        ``fresh`` promises a key that never held an object and that nobody reads
        before this call returns (the key of a claimed version): a backend may
        then write the object in place, so that a partial object can be seen
        under the key until the call ends. On error it is removed all the same.
        """
        ...

    async def open(self, key: str, start: int = 0, end: int | None = None) -> BlobReader:
        """Open ``[start, end)`` of ``key``; raises :class:`BlobNotFound` before any byte."""
        ...

    async def open_many(self, keys: Sequence[str]) -> list[BlobReader]:
        """Open the whole objects ``keys`` at once (a series retrieve); all or none.

        Raises :class:`BlobNotFound`, with nothing left open, if one is missing.
        """
        ...

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Read a small range fully into memory."""
        ...

    async def head(self, key: str) -> BlobInfo:
        """Size, storage class and modification time of ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Every object whose key starts with ``prefix`` (order is backend-defined)."""
        ...

    async def set_storage_class(self, key: str, storage_class: str) -> None:
        """Move ``key`` to another storage class (tiering)."""
        ...

    async def ping(self) -> None:
        """Raise ``DependencyUnavailable`` with a reason unless the store is usable."""
        ...

    async def aclose(self) -> None:
        """Release connections and other resources."""
        ...
