"""A lean HTTP/1.1 GET for bulk throughput: the body is received into one reused
buffer, counted and not kept.

A retrieve measured through a heavy client gauges the load generator as much as
the server. httpx reads 64 KiB at a time through several layers and spends
about a core on a fast stream. asyncio's stream reader is lighter but still
copies each byte three times (a fresh ``bytes`` per socket read, the reader's
buffer, the slice handed out): at 2 GB/s that is most of a core, and two
servers that differ in speed read alike through it. Here the event loop reads
the socket straight into one 1 MiB buffer (:class:`asyncio.BufferedProtocol`),
and only what HTTP/1.1 needs to find the end of the body is parsed:
``Content-Length``, ``chunked`` or end of stream.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import Enum, auto
from urllib.parse import urlsplit

from .load import Reply

READ_BYTES = 1024 * 1024
#: Longest response head or chunk-size line accepted.
MAX_LINE_BYTES = 64 * 1024
_HEAD_END = b"\r\n\r\n"
#: Statuses that never carry a body (RFC 9112 §6.3).
_BODILESS = (204, 304)


class ProtocolError(Exception):
    """The server's answer is not well-formed HTTP/1.1."""


class _State(Enum):
    HEAD = auto()
    BODY = auto()
    UNTIL_CLOSE = auto()
    CHUNK_SIZE = auto()
    CHUNK_DATA = auto()
    CHUNK_END = auto()
    TRAILER = auto()
    IDLE = auto()


@dataclass
class Answer:
    """What one response was: status, headers, body bytes counted."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    size: int = 0

    def reusable(self) -> bool:
        """Whether the connection may carry the next request."""
        framed = "content-length" in self.headers or "chunked" in self.headers.get(
            "transfer-encoding", ""
        )
        return framed and self.headers.get("connection", "").lower() != "close"


class _Receiver(asyncio.BufferedProtocol):
    """Reads responses one at a time; each body is counted as it lands in the buffer."""

    def __init__(self) -> None:
        self._buffer = bytearray(READ_BYTES)
        self._view = memoryview(self._buffer)
        self._state = _State.IDLE
        self._pending = bytearray()
        self._remaining = 0
        self._answer = Answer()
        self._waiter: asyncio.Future[Answer] | None = None
        self._transport: asyncio.BaseTransport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def expect(self) -> asyncio.Future[Answer]:
        """A future for the next response on the connection."""
        self._waiter = asyncio.get_running_loop().create_future()
        self._answer = Answer()
        self._pending.clear()
        self._state = _State.HEAD
        return self._waiter

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._consume(0, nbytes)
        except (ProtocolError, ValueError, IndexError) as exc:
            self._fail(ProtocolError(f"malformed answer: {exc}"))
            self._drop()

    def _drop(self) -> None:
        """Close a connection whose framing was lost: it cannot carry another request."""
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool:
        if self._state is _State.UNTIL_CLOSE:
            self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("connection closed before the answer ended"))

    def _fail(self, exc: BaseException) -> None:
        self._state = _State.IDLE
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _finish(self) -> None:
        self._state = _State.IDLE
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(self._answer)

    def _consume(self, at: int, end: int) -> None:
        while at < end:
            state = self._state
            if state is _State.HEAD:
                at = self._head(at, end)
            elif state in (_State.BODY, _State.CHUNK_DATA):
                at = self._count(at, end)
            elif state is _State.UNTIL_CLOSE:
                self._answer.size += end - at
                at = end
            elif state is _State.IDLE:
                raise ProtocolError("bytes after the end of the answer")
            else:
                at = self._chunk_line(at, end)

    def _head(self, at: int, end: int) -> int:
        searched = max(0, len(self._pending) - len(_HEAD_END) + 1)
        self._pending += self._view[at:end]
        found = self._pending.find(_HEAD_END, searched)
        if found < 0:
            if len(self._pending) > MAX_LINE_BYTES:
                raise ProtocolError("response head too long")
            return end
        body_starts = end - (len(self._pending) - found - len(_HEAD_END))
        self._start_body(bytes(self._pending[:found]))
        self._pending.clear()
        return body_starts

    def _start_body(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        answer = self._answer
        answer.status = int(lines[0].split(" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            answer.headers[name.strip().lower()] = value.strip()
        if answer.status in _BODILESS:
            self._finish()
        elif "chunked" in answer.headers.get("transfer-encoding", "").lower():
            self._state = _State.CHUNK_SIZE
        elif "content-length" in answer.headers:
            self._remaining = int(answer.headers["content-length"])
            self._state = _State.BODY
            if self._remaining == 0:
                self._finish()
        else:
            self._state = _State.UNTIL_CLOSE

    def _count(self, at: int, end: int) -> int:
        taken = min(self._remaining, end - at)
        self._answer.size += taken
        self._remaining -= taken
        if self._remaining == 0:
            if self._state is _State.BODY:
                self._finish()
            else:
                self._state = _State.CHUNK_END
        return at + taken

    def _chunk_line(self, at: int, end: int) -> int:
        """One line of chunked framing: a chunk size, the CRLF after data, or a trailer."""
        newline = self._buffer.find(b"\n", at, end)
        if newline < 0:
            self._pending += self._view[at:end]
            if len(self._pending) > MAX_LINE_BYTES:
                raise ProtocolError("chunk framing line too long")
            return end
        self._pending += self._view[at:newline]
        line = bytes(self._pending).rstrip(b"\r")
        self._pending.clear()
        if self._state is _State.CHUNK_SIZE:
            self._remaining = int(line.split(b";", 1)[0], 16)
            self._state = _State.CHUNK_DATA if self._remaining else _State.TRAILER
        elif self._state is _State.CHUNK_END:
            if line:
                raise ProtocolError("chunk data longer than its size")
            self._state = _State.CHUNK_SIZE
        elif not line:
            self._finish()
        return newline + 1


class LeanConnection:
    """One keep-alive HTTP/1.1 connection to a server, reopened when it closes."""

    def __init__(self) -> None:
        self._link: tuple[asyncio.Transport, _Receiver] | None = None
        self._address: tuple[str, int] | None = None

    async def get(self, url: str, accept: str) -> Reply:
        """GET ``url``; the time covers the last byte received (not the connect)."""
        parts = urlsplit(url)
        address = (parts.hostname or "", parts.port or 80)
        transport, receiver = await self._connected(address)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: {accept}\r\n\r\n"
        answered = receiver.expect()
        start = time.perf_counter()
        try:
            transport.write(request.encode("latin-1"))
            answer = await answered
        except BaseException:
            await self.aclose()
            raise
        seconds = time.perf_counter() - start
        if not answer.reusable():
            await self.aclose()
        return Reply(answer.status, seconds, answer.size, b"")

    async def _connected(self, address: tuple[str, int]) -> tuple[asyncio.Transport, _Receiver]:
        if self._link is not None and (self._address != address or self._link[1].closed):
            await self.aclose()
        if self._link is None:
            loop = asyncio.get_running_loop()
            transport, receiver = await loop.create_connection(_Receiver, *address)
            self._link = (transport, receiver)
            self._address = address
        return self._link

    async def aclose(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link[0].close()


async def stream_get(url: str, accept: str) -> Reply:
    """GET ``url`` on a connection of its own."""
    connection = LeanConnection()
    try:
        return await connection.get(url, accept)
    finally:
        await connection.aclose()
