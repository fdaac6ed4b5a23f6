"""Frame and bulk data payloads and the responses that carry them (PS3.18 §8.7.3.5).

A :class:`Payload` is either bytes in memory (a transcoded frame) or byte spans
of a blob (a frame's fragments, a bulk value) streamed by ranged reads, so no
whole object is read to serve a piece of it. With exactly one payload a ``Range``
request is answered 206 with ``Content-Range`` over that payload's bytes (also
inside a multipart body, where cornerstone reads it); with several it is ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from skypacs.dicomweb.byte_ranges import ByteRange, RangeNotSatisfiable, parse_range, slice_spans
from skypacs.dicomweb.media_types import MediaType
from skypacs.dicomweb.multipart import (
    MultipartFraming,
    OutPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from skypacs.http import error_response
from skypacs.sendfile import file_sender
from skypacs.storage import BlobStore, Chunk

from .sendfile_response import SendfileResponse, span_batches


@dataclass(frozen=True, slots=True)
class Payload:
    """One frame or bulk value: in-memory ``data``, or ``spans`` of blob ``key``."""

    size: int
    data: bytes | None = None
    key: str = ""
    spans: Sequence[tuple[int, int]] = field(default_factory=tuple)

    @classmethod
    def of_spans(cls, key: str, spans: Sequence[tuple[int, int]]) -> Payload:
        return cls(size=sum(length for _, length in spans), key=key, spans=tuple(spans))

    def body(self, blobs: BlobStore, byte_range: ByteRange | None) -> AsyncIterator[Chunk]:
        """The payload bytes (only ``byte_range`` of them when given)."""
        start, end = (0, self.size) if byte_range is None else (byte_range.start, byte_range.end)
        if self.data is not None:
            return _once(self.data[start:end])
        return stream_spans(blobs, self.key, slice_spans(self.spans, start, end))

    def blob_spans(self, byte_range: ByteRange | None) -> list[tuple[int, int]]:
        """The non-empty blob spans holding the payload (or ``byte_range`` of it);
        none for a payload in memory."""
        if self.data is not None:
            return []
        start, end = (0, self.size) if byte_range is None else (byte_range.start, byte_range.end)
        return [span for span in slice_spans(self.spans, start, end) if span[1] > 0]


async def _once(data: bytes) -> AsyncIterator[Chunk]:
    yield data


async def stream_spans(
    blobs: BlobStore, key: str, spans: Sequence[tuple[int, int]]
) -> AsyncIterator[Chunk]:
    """Ranged reads of ``spans`` of ``key``, one after another."""
    for offset, length in spans:
        if length <= 0:
            continue
        reader = await blobs.open(key, offset, offset + length)
        async with reader:
            async for chunk in reader:
                yield chunk


PayloadSource = Callable[[int], Awaitable[Payload]]


def _not_satisfiable(exc: RangeNotSatisfiable) -> Response:
    headers = {"Content-Range": f"bytes */{exc.size}"}
    return error_response(416, exc.title, exc.detail, headers)


@dataclass(frozen=True, slots=True)
class _Answer:
    """How a payload response is labelled: status, header fields, the body's
    Content-Type and (inside a multipart body) the part's."""

    status: int
    headers: dict[str, str]
    media_type: str
    part_type: str


async def payload_response(
    request: Request,
    blobs: BlobStore,
    *,
    first: Payload,
    count: int,
    rest: PayloadSource,
    media: MediaType,
    transfer_syntax: str | None,
    multipart: bool,
) -> Response:
    """Send ``count`` payloads: ``first`` (already made), then ``rest(1..count-1)``.

    Single part when ``multipart`` is false (then ``count`` is 1). A lone payload
    stored as blob spans goes out with ``sendfile`` where the server offers it.
    """
    byte_range: ByteRange | None = None
    if count == 1:
        try:
            byte_range = parse_range(request.headers.get("range"), first.size)
        except RangeNotSatisfiable as exc:
            return _not_satisfiable(exc)
    part_type = media.essence
    if transfer_syntax is not None:
        part_type += f"; transfer-syntax={transfer_syntax}"
    status, headers = 200, {"Accept-Ranges": "bytes"}
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = byte_range.content_range()
    boundary = new_boundary()
    content_type = multipart_content_type(media.essence, boundary, transfer_syntax)
    answer = _Answer(status, headers, content_type if multipart else part_type, part_type)
    if count == 1:
        framing = MultipartFraming(boundary) if multipart else None
        sent = await _from_file(request, blobs, first, byte_range, answer, framing)
        if sent is not None:
            return sent
    if not multipart:
        length = first.size if byte_range is None else byte_range.length
        headers["Content-Length"] = str(length)
        return StreamingResponse(
            first.body(blobs, byte_range), status, headers, media_type=part_type
        )

    async def parts() -> AsyncIterator[OutPart]:
        yield OutPart(part_type, first.body(blobs, byte_range))
        for index in range(1, count):
            payload = await rest(index)
            yield OutPart(part_type, payload.body(blobs, None))

    return StreamingResponse(
        write_multipart(parts(), boundary), status, headers, media_type=content_type
    )


async def _from_file(
    request: Request,
    blobs: BlobStore,
    payload: Payload,
    byte_range: ByteRange | None,
    answer: _Answer,
    framing: MultipartFraming | None,
) -> Response | None:
    """The payload (or ``byte_range`` of it) sent from its blob's file with
    ``sendfile``, framed as one part when ``framing`` is given; None when the
    server, the store or the payload does not allow it."""
    sender = file_sender(request.scope)
    spans = payload.blob_spans(byte_range)
    if sender is None or not spans or not blobs.file_backed:
        return None
    low = min(offset for offset, _ in spans)
    high = max(offset + length for offset, length in spans)
    reader = await blobs.open(payload.key, low, high)
    if reader.descriptor is None:
        await reader.aclose()
        return None
    head = framing.head(OutPart(answer.part_type, b"")) if framing else b""
    tail = framing.close() if framing else b""
    length = len(head) + sum(length for _, length in spans) + len(tail)
    return SendfileResponse(
        span_batches(reader, spans, head, tail),
        sender,
        length=length,
        media_type=answer.media_type,
        headers=answer.headers,
        status_code=answer.status,
        owned=[reader],
    )
