"""Stored instances answered with ``sendfile`` (see :mod:`skypacs.sendfile`).

When every instance of a retrieve goes out as stored, the body is known byte for
byte before it starts (Content-Length) and is made of file ranges between short
multipart headers. Such a body is cut into batches of pieces; each batch goes to
the kernel in one worker-thread call, so a series costs a few thread hops and
no copy of its bytes through the server process. A single instance, frame or
bulk value is one batch of file spans.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Mapping, Sequence
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


async def span_batches(
    reader: BlobReader, spans: Sequence[tuple[int, int]], head: bytes = b"", tail: bytes = b""
) -> AsyncGenerator[Batch, None]:
    """``spans`` (file offset, length) of ``reader``'s open file as one body between
    ``head`` and ``tail``: a whole instance, a frame's fragments or a bulk value."""
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


async def multipart_batches(
    parts: AsyncIterable[OutPart], boundary: str
) -> AsyncGenerator[Batch, None]:
    """``parts``, whose bodies are readers with an open file, framed as one
    multipart body.

    A yielded batch's readers belong to the consumer; the ones of a batch not
    yet yielded are closed here if the body stops early.
    """
    framing = MultipartFraming(boundary)
    batch = Batch()
    try:
        async for part in parts:
            head = framing.head(part)
            batch.add(head, len(head))
            body = part.body
            if not isinstance(body, BlobReader) or body.descriptor is None:
                raise ValueError("a part without an open file cannot be sent from it")
            batch.readers.append(body)
            batch.add(FileSpan(body.descriptor, body.start, body.length), body.length)
            if batch.full():
                yield batch
                batch = Batch()
        tail = framing.close()
        batch.add(tail, len(tail))
        yield batch
    finally:
        await close_all(batch.readers)
        closer = getattr(parts, "aclose", None)
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
