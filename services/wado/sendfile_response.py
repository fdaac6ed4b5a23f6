"""Stored instances answered with ``sendfile`` (see :mod:`skypacs.sendfile`).

When every instance of a retrieve goes out as stored, the body is known byte for
byte before it starts (Content-Length) and is made of file ranges between short
multipart headers. Such a body is cut into batches of pieces; each batch goes to
the kernel in one worker-thread call, so a series costs a few thread hops and
no copy of its bytes through the server process. Blob readers without a file
(object stores) contribute their chunks instead, a batch at a time.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from skypacs.dicomweb.multipart import MultipartFraming, OutPart
from skypacs.sendfile import FileSender, FileSpan, Piece
from skypacs.storage import BlobReader

from .read_ahead import close_all

#: File bytes one batch hands to the kernel in one thread call.
BATCH_BYTES = 8 * 1024 * 1024
#: Pieces (headers, file ranges, chunks) in one batch.
BATCH_PIECES = 64


@dataclass(slots=True)
class Batch:
    """Pieces to send in order, and the readers to close once they are sent."""

    pieces: list[Piece] = field(default_factory=list)
    readers: list[BlobReader] = field(default_factory=list)
    size: int = 0

    def add(self, piece: Piece, size: int) -> None:
        self.pieces.append(piece)
        self.size += size

    def full(self) -> bool:
        return self.size >= BATCH_BYTES or len(self.pieces) >= BATCH_PIECES


def sendable(body: object) -> bool:
    """Whether ``body`` is a blob range the kernel can send from its file."""
    return isinstance(body, BlobReader) and body.descriptor is not None


def single_batches(reader: BlobReader) -> AsyncGenerator[Batch, None]:
    """One instance alone (a single-part answer)."""
    return multipart_batches(_one(reader), None)


async def span_batches(
    reader: BlobReader, spans: Sequence[tuple[int, int]], head: bytes = b"", tail: bytes = b""
) -> AsyncGenerator[Batch, None]:
    """``spans`` (file offset, length) of ``reader``'s open file as one body between
    ``head`` and ``tail``: a frame's fragments or a bulk value, with its framing."""
    if reader.descriptor is None:
        raise ValueError("the reader has no open file to send from")
    batch = Batch()
    if head:
        batch.add(head, len(head))
    for offset, length in spans:
        batch.add(FileSpan(reader.descriptor, offset, length), length)
    if tail:
        batch.add(tail, len(tail))
    yield batch


async def _one(reader: BlobReader) -> AsyncIterator[OutPart]:
    yield OutPart("", reader)


async def multipart_batches(
    parts: AsyncIterable[OutPart], boundary: str | None
) -> AsyncGenerator[Batch, None]:
    """``parts`` framed as one multipart body (``boundary`` None: the bodies alone).

    A yielded batch's readers belong to the consumer; the ones of a batch not
    yet yielded are closed here if the body stops early.
    """
    framing = MultipartFraming(boundary) if boundary is not None else None
    batch = Batch()
    try:
        async for part in parts:
            if framing is not None:
                head = framing.head(part)
                batch.add(head, len(head))
            body = part.body
            if isinstance(body, BlobReader) and body.descriptor is not None:
                batch.readers.append(body)
                batch.add(FileSpan(body.descriptor, body.start, body.length), body.length)
            elif isinstance(body, bytes):
                batch.add(body, len(body))
            else:
                async with aclosing(_chunks_of(body)) as chunks:
                    async for chunk in chunks:
                        batch.add(chunk, len(chunk))
                        if batch.full():
                            yield batch
                            batch = Batch()
            if batch.full():
                yield batch
                batch = Batch()
        if framing is not None:
            tail = framing.close()
            batch.add(tail, len(tail))
        yield batch
    finally:
        await close_all(batch.readers)
        closer = getattr(parts, "aclose", None)
        if closer is not None:
            await closer()


async def _chunks_of(
    body: AsyncIterable[bytes | memoryview],
) -> AsyncGenerator[bytes | memoryview, None]:
    """The non-empty chunks of a streamed body, which is closed at the end."""
    try:
        async for chunk in body:
            if chunk:
                yield chunk
    finally:
        closer = getattr(body, "aclose", None)
        if closer is not None:
            await closer()


class SendfileResponse(Response):
    """A response whose body of known ``length`` goes out through ``sender``, batch
    by batch. ``owned`` readers (opened before the response was made) are closed
    once it ends, however it ends."""

    def __init__(
        self,
        batches: AsyncGenerator[Batch, None],
        sender: FileSender,
        *,
        length: int,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        status_code: int = 200,
        owned: Sequence[BlobReader] = (),
    ) -> None:
        super().__init__(
            status_code=status_code,
            headers={**(headers or {}), "Content-Length": str(length)},
            media_type=media_type,
        )
        self._batches = batches
        self._sender = sender
        self._owned = owned

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            start = {"type": "http.response.start", "status": self.status_code}
            await send({**start, "headers": self.raw_headers})
            if scope["method"] != "HEAD" and not await self._send_batches():
                return
        finally:
            await self._batches.aclose()
            await close_all(self._owned)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_batches(self) -> bool:
        """False when the client left before the body was sent."""
        async for batch in self._batches:
            try:
                delivered = await self._sender.send(batch.pieces)
            finally:
                await close_all(batch.readers)
            if not delivered:
                return False
        return True
