"""Streaming multipart/related (RFC 2046 §5.1, RFC 2387) for STOW-RS and WADO-RS.

:func:`iter_parts` parses a request body as it arrives and never holds a whole
part: memory is bounded by the incoming chunk plus the delimiter length.
:func:`write_multipart` produces a response body part by part.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from skypacs.dicomweb.media_types import (
    MULTIPART_RELATED,
    MediaType,
    parse_media_type,
    quote_if_needed,
)
from skypacs.errors import BadRequest, PayloadTooLarge

CRLF = b"\r\n"
_CR = 0x0D
_LF = 0x0A
_PADDING = b" \t"
_MAX_PADDING = 1024
# RFC 2046 §5.1.1 caps boundaries at 70 characters, but real peers exceed it
# (Orthanc's DICOMweb plugin sends 73: two UUIDs joined by "-"), so accept up to 200.
MAX_BOUNDARY_LENGTH = 200
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,199}[0-9A-Za-z'()+_,\-./:=?]")
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\r\n\x00]")
# In-memory part bodies up to this size go out in one chunk with their header.
_COALESCE_BYTES = 64 * 1024


def validate_boundary(boundary: str) -> str:
    """Return ``boundary`` if made of RFC 2046 bchars, no trailing space, 1-200 long."""
    if _BOUNDARY.fullmatch(boundary) is None:
        raise BadRequest("invalid multipart boundary")
    return boundary


def boundary_from_content_type(content_type: str) -> str:
    """The ``boundary`` parameter of a multipart Content-Type, quoted or not.

    Raises :class:`BadRequest` when it is missing or invalid.
    """
    boundary = parse_media_type(content_type).param("boundary")
    if boundary is None:
        raise BadRequest("multipart Content-Type has no boundary parameter")
    return validate_boundary(boundary)


class PartHeaders(Mapping[str, str]):
    """Part header fields, looked up case-insensitively; repeated fields are comma-joined."""

    __slots__ = ("_names", "_values")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._values: dict[str, str] = {}
        self._names: dict[str, str] = {}
        for name, value in fields:
            key = name.lower()
            if key in self._values:
                self._values[key] = f"{self._values[key]}, {value}"
            else:
                self._values[key] = value
                self._names[key] = name

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PartHeaders({dict(self.items())!r})"


class _Reader:
    """The shared parse state: a rolling buffer over the body iterator."""

    def __init__(
        self, body: AsyncIterable[bytes], boundary: str, max_body_bytes: int | None
    ) -> None:
        self._source = aiter(body)
        self._delimiter = b"\n--" + boundary.encode("ascii")
        # A virtual CRLF lets a delimiter at the very start of the body be found
        # like any other; whatever precedes the first delimiter is the preamble.
        self._buffer = bytearray(CRLF)
        self._max_body_bytes = max_body_bytes
        self._received = 0
        self._in_part = True
        # A whole chunk of the current part's body, due after what the buffer holds.
        self._ready: bytes | None = None
        self.closed = False

    async def _next(self) -> bytes:
        """The next non-empty chunk of the body; a body that ends here is truncated."""
        async for chunk in self._source:
            if not chunk:
                continue
            self._received += len(chunk)
            if self._max_body_bytes is not None and self._received > self._max_body_bytes:
                raise PayloadTooLarge(f"request body exceeds {self._max_body_bytes} bytes")
            return bytes(chunk)
        raise BadRequest("truncated multipart body")

    async def _fill(self) -> None:
        """Append the next non-empty chunk to the buffer."""
        self._buffer += await self._next()

    def _body_through(self, chunk: bytes) -> bool:
        """Whether all of ``chunk``, after the few bytes buffered, is body of the part.

        It is when no delimiter lies in it or across its start, and its end
        cannot begin one: no line break in its last bytes, no CR as its last.
        A chunk shorter than a delimiter is never taken whole.
        """
        delimiter = self._delimiter
        if len(chunk) < len(delimiter) or chunk.find(delimiter) >= 0:
            return False
        if self._buffer and (bytes(self._buffer) + chunk[: len(delimiter)]).find(delimiter) >= 0:
            return False
        return chunk.find(b"\n", len(chunk) - len(delimiter)) < 0 and chunk[-1:] != b"\r"

    async def _delimiter_end(self, index: int) -> int | None:
        """End of the delimiter line found at ``index``, or None if it is not one.

        After the boundary comes ``--`` (close delimiter) or transport padding
        and a line break (RFC 2046 §5.1.1); anything else means the bytes only
        look like a delimiter.
        """
        buffer = self._buffer
        position = index + len(self._delimiter)
        while len(buffer) < position + 2:
            await self._fill()
        if buffer[position : position + 2] == b"--":
            self.closed = True
            return position + 2
        while True:
            while position >= len(buffer):
                await self._fill()
            byte = buffer[position]
            if byte in _PADDING:
                position += 1
                if position - index > _MAX_PADDING + len(self._delimiter):
                    raise BadRequest("malformed multipart delimiter line")
                continue
            if byte == _LF:
                return position + 1
            if byte != _CR:
                return None
            while position + 1 >= len(buffer):
                await self._fill()
            return position + 2 if buffer[position + 1] == _LF else None

    async def next_chunk(self) -> bytes | None:
        """The next piece of the current part's body, or None once it has ended.

        A chunk of the request that is all body is handed on as it came, not
        copied through the buffer (most of a large part).
        """
        if not self._in_part:
            return None
        if self._ready is not None:
            chunk, self._ready = self._ready, None
            return chunk
        buffer = self._buffer
        search_from = 0
        while True:
            index = buffer.find(self._delimiter, search_from)
            if index < 0:
                cut = len(buffer) - len(self._delimiter)
                if cut > 0:
                    return _take(buffer, cut, cut)
                chunk = await self._next()
                if not self._body_through(chunk):
                    buffer += chunk
                    continue
                if not buffer:
                    return chunk
                self._ready = chunk
                return _take(buffer, len(buffer), len(buffer))
            end = await self._delimiter_end(index)
            if end is None:
                search_from = index + 1
                continue
            stop = index - 1 if index > 0 and buffer[index - 1] == _CR else index
            self._in_part = False
            return _take(buffer, stop, end) or None

    async def read_headers(self, max_bytes: int) -> PartHeaders:
        """Read the header block of the part whose delimiter was just consumed."""
        buffer = self._buffer
        lines: list[bytes] = []
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            if newline < 0:
                if len(buffer) > max_bytes:
                    raise PayloadTooLarge(f"multipart part headers exceed {max_bytes} bytes")
                await self._fill()
                continue
            if newline + 1 > max_bytes:
                raise PayloadTooLarge(f"multipart part headers exceed {max_bytes} bytes")
            line = bytes(buffer[start:newline]).rstrip(b"\r")
            start = newline + 1
            if not line:
                break
            lines.append(line)
        del buffer[:start]
        self._in_part = True
        return PartHeaders(_parse_header_lines(lines))

    @property
    def position(self) -> int:
        """How many bytes of the body lie before the next unparsed one."""
        # The buffer holds the unparsed bytes received, after the virtual CRLF
        # once that is parsed (which is before any part starts).
        waiting = len(self._ready) if self._ready is not None else 0
        return self._received - len(self._buffer) - waiting


def _take(buffer: bytearray, stop: int, drop: int) -> bytes:
    """``buffer[:stop]`` as bytes (one copy), then its first ``drop`` bytes removed."""
    with memoryview(buffer) as view:
        data = bytes(view[:stop])
    del buffer[:drop]
    return data


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_header_lines(lines: list[bytes]) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {_decode(line).strip()}")
            continue
        name, colon, value = _decode(line).partition(":")
        name = name.strip()
        if not colon or not name or " " in name:
            raise BadRequest("malformed multipart part header")
        fields.append((name, value.strip()))
    return fields


class Part:
    """One part of a multipart body.

    Its body is read with :meth:`chunks`, :meth:`read` or skipped with
    :meth:`drain`; a part left unread is drained when the next one is requested.
    """

    __slots__ = ("_done", "_reader", "content_location", "content_type", "headers", "offset")

    def __init__(self, reader: _Reader, headers: PartHeaders) -> None:
        self._reader = reader
        self._done = False
        self.headers = headers
        #: Where the part's body starts in the multipart body, in bytes.
        self.offset = reader.position
        raw_type = headers.get("content-type")
        self.content_type: MediaType | None = parse_media_type(raw_type) if raw_type else None
        self.content_location: str | None = headers.get("content-location")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, in pieces as they arrive; each piece is yielded once."""
        while not self._done:
            data = await self._reader.next_chunk()
            if data is None:
                self._done = True
                return
            yield data

    async def read(self, max_bytes: int) -> bytes:
        """The whole body; raises :class:`PayloadTooLarge` beyond ``max_bytes``."""
        pieces: list[bytes] = []
        size = 0
        async for data in self.chunks():
            size += len(data)
            if size > max_bytes:
                raise PayloadTooLarge(f"multipart part exceeds {max_bytes} bytes")
            pieces.append(data)
        return b"".join(pieces)

    async def drain(self) -> None:
        """Skip the rest of the body."""
        async for _ in self.chunks():
            pass


async def iter_parts(
    body: AsyncIterable[bytes],
    boundary: str,
    *,
    max_parts: int,
    max_part_header_bytes: int,
    max_body_bytes: int | None,
) -> AsyncIterator[Part]:
    """Parse a multipart body incrementally, yielding each :class:`Part` as it starts.

    Tolerated: a preamble or leading CRLF, transport padding after a boundary,
    LF-only line endings, parts without headers; the epilogue after the close
    delimiter is not read. Raises :class:`BadRequest` for a body that ends before
    the close delimiter, and :class:`PayloadTooLarge` as soon as part
    ``max_parts + 1`` starts, a header block exceeds ``max_part_header_bytes``, or
    more than ``max_body_bytes`` arrive.
    """
    reader = _Reader(body, validate_boundary(boundary), max_body_bytes)
    while await reader.next_chunk() is not None:
        pass
    count = 0
    while not reader.closed:
        count += 1
        if count > max_parts:
            raise PayloadTooLarge(f"multipart body has more than {max_parts} parts")
        part = Part(reader, await reader.read_headers(max_part_header_bytes))
        yield part
        await part.drain()


@dataclass(frozen=True, slots=True)
class OutPart:
    """A part to write: its Content-Type, extra header fields and body."""

    content_type: str
    #: Bytes in memory, or streamed pieces (``memoryview`` for reads that filled a buffer).
    body: AsyncIterable[bytes | memoryview] | bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def new_boundary() -> str:
    """A fresh random boundary (32 hex digits: a token, so it needs no quoting)."""
    return uuid.uuid4().hex


def _header_block(part: OutPart, cache: dict[str, bytes] | None = None) -> bytes:
    """The part's header lines and the blank line after them.

    Parts without extra fields share the block of their Content-Type through
    ``cache`` (a retrieve repeats one type for every instance).
    """
    if cache is not None and not part.headers:
        block = cache.get(part.content_type)
        if block is None:
            block = cache[part.content_type] = _header_block(part)
        return block
    fields = [("Content-Type", part.content_type)]
    fields.extend((n, v) for n, v in part.headers.items() if n.lower() != "content-type")
    lines: list[str] = []
    for name, value in fields:
        if _HEADER_VALUE_FORBIDDEN.search(name + value) or ":" in name:
            raise ValueError(f"invalid multipart header field {name!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("utf-8") + CRLF


class MultipartFraming:
    """The bytes around the parts of one multipart body, in the order they go out.

    Each part starts with a header spelled exactly ``Content-Type:`` (cornerstone
    matches it case-sensitively); lines end in CRLF; the body starts directly
    with the first delimiter and ends with ``--boundary--`` CRLF. Parts without
    extra fields share the header block of their Content-Type.
    """

    def __init__(self, boundary: str) -> None:
        self._dash_boundary = b"--" + validate_boundary(boundary).encode("ascii")
        self._separator = self._dash_boundary + CRLF
        self._blocks: dict[str, bytes] = {}

    def head(self, part: OutPart) -> bytes:
        """The delimiter before ``part`` (CRLF-led after the first) and its header block."""
        header = self._separator + _header_block(part, self._blocks)
        self._separator = CRLF + self._dash_boundary + CRLF
        return header

    def close(self) -> bytes:
        """The closing delimiter, after the last part."""
        return self._separator[: -len(CRLF)] + b"--" + CRLF


async def write_multipart(
    parts: AsyncIterable[OutPart], boundary: str
) -> AsyncIterator[bytes | memoryview]:
    """Serialize ``parts`` as a multipart body (see :class:`MultipartFraming`)."""
    framing = MultipartFraming(boundary)
    try:
        async for part in parts:
            header = framing.head(part)
            body = part.body
            if isinstance(body, bytes):
                if len(body) <= _COALESCE_BYTES:
                    yield header + body
                else:
                    yield header
                    yield body
                continue
            yield header
            try:
                async for data in body:
                    if data:
                        yield data
            finally:
                await _release(body)
    finally:
        await _release(parts)
    yield framing.close()


async def _release(source: object) -> None:
    """``aclose`` an async source (a blob reader, a generator) if it has one.

    Runs also when the response stops early (client gone), so open files and
    connections are released at once rather than when garbage collected.
    """
    closer = getattr(source, "aclose", None)
    if closer is not None:
        await closer()


def multipart_length(parts: Sequence[tuple[str, int]], boundary: str) -> int:
    """Size of the body :func:`write_multipart` makes of parts given as (Content-Type,
    body size), without extra header fields: lets a response carry Content-Length."""
    dash_boundary = len(b"--") + len(validate_boundary(boundary).encode("ascii"))
    blocks: dict[str, bytes] = {}
    total = 0
    for position, (content_type, size) in enumerate(parts):
        total += dash_boundary + len(CRLF) + (len(CRLF) if position else 0)
        total += len(_header_block(OutPart(content_type, b""), blocks)) + size
    closing = dash_boundary + len(b"--") + len(CRLF)
    return total + closing + (len(CRLF) if parts else 0)


def multipart_content_type(
    inner_type: str, boundary: str, transfer_syntax: str | None = None
) -> str:
    """The Content-Type of a multipart/related body whose parts are ``inner_type``.

    For example ``multipart/related; type="application/dicom"; boundary=...;
    transfer-syntax=1.2.840.10008.1.2.1``; ``type`` is always quoted.
    """
    inner = parse_media_type(inner_type).essence
    rendered = f'{MULTIPART_RELATED.essence}; type="{inner}"'
    rendered += f"; boundary={quote_if_needed(validate_boundary(boundary))}"
    if transfer_syntax is not None:
        rendered += f"; transfer-syntax={quote_if_needed(transfer_syntax)}"
    return rendered
