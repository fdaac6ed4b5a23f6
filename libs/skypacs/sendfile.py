"""Zero-copy sends of file ranges (``sendfile(2)``) for uvicorn's httptools protocol.

A retrieve of stored instances is nearly all file bytes. Through the ASGI body
messages each byte is copied from the page cache into a Python buffer and again
into the socket: about a tenth of the server's CPU for a series retrieve. With
:class:`SendfileHttpToolsProtocol` a plain-HTTP request's scope carries a
:class:`FileSender` under ``scope["extensions"]["skypacs.sendfile"]``; once the
response has started with a ``Content-Length``, the app hands it file ranges
and small byte strings, and the kernel moves the file pages to the socket.

The sends run in a worker thread (``sendfile`` reads the file, which may block
on the disk), on a duplicate of the socket's descriptor so a connection closed
meanwhile cannot hand its number to another file. When the socket is full the
thread waits briefly, then gives the wait back to the event loop, so a slow
client holds no thread. Bytes sent this way are counted against the response's
``Content-Length`` in uvicorn's request cycle, whose checks stay in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from skypacs.request_body import PiecewiseBodyProtocol
from skypacs.storage.threads import ThreadLane

SENDFILE_EXTENSION = "skypacs.sendfile"
#: How long the sending thread waits for a full socket before the loop takes over.
THREAD_WAIT_MS = 20
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass(frozen=True, slots=True)
class FileSpan:
    """``length`` bytes of the open file ``fd`` from ``offset``."""

    fd: int
    offset: int
    length: int


Piece = bytes | memoryview | FileSpan


class FileShrunk(OSError):
    """A file ended before a span that was to be sent from it."""


@dataclass(slots=True)
class _Cursor:
    """How far a send got: the piece under way and how many of its bytes went."""

    piece: int = 0
    done: int = 0


def piece_length(piece: Piece) -> int:
    if isinstance(piece, FileSpan):
        return piece.length
    return piece.nbytes if isinstance(piece, memoryview) else len(piece)


def _send_some(sock: int, piece: Piece, done: int) -> int:
    if isinstance(piece, FileSpan):
        sent = os.sendfile(sock, piece.fd, piece.offset + done, piece.length - done)
        if sent == 0:
            raise FileShrunk("file ended before the span being sent")
        return sent
    return os.write(sock, memoryview(piece)[done:])


def _push(sock: int, pieces: Sequence[Piece], cursor: _Cursor, wait_ms: int) -> bool:
    """Send ``pieces`` from ``cursor`` on (blocking, in a worker thread).

    True once all are sent; False when the socket stayed full for ``wait_ms``.
    """
    poller: Any = None
    while cursor.piece < len(pieces):
        piece = pieces[cursor.piece]
        if cursor.done >= piece_length(piece):
            cursor.piece += 1
            cursor.done = 0
            continue
        try:
            cursor.done += _send_some(sock, piece, cursor.done)
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(sock, select.POLLOUT)
            if not poller.poll(wait_ms):
                return False
    return True


class FileSender:
    """Sends a started response's body bytes straight to the connection's socket.

    It holds its request cycle weakly: the cycle's scope holds the sender.
    """

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle_ref = weakref.ref(cycle)

    @property
    def _cycle(self) -> Any:
        cycle = self._cycle_ref()
        if cycle is None:
            raise RuntimeError("the request this sender served is over")
        return cycle

    def usable(self) -> bool:
        """Whether a body may go out through :meth:`send` (a GET answered with a
        Content-Length whose headers were sent, on a connection still open)."""
        cycle = self._cycle_ref()
        return (
            cycle is not None
            and cycle.response_started
            and not cycle.response_complete
            and cycle.chunked_encoding is False
            and cycle.scope["method"] != "HEAD"
            and not cycle.disconnected
        )

    async def send(self, pieces: Sequence[Piece]) -> bool:
        """Send ``pieces`` in order; False (and the connection dropped) if the client left.

        Raises :class:`RuntimeError` if the response cannot take them (see
        :meth:`usable`) or they exceed its Content-Length.
        """
        cycle = self._cycle
        if cycle.disconnected or self._transport.is_closing():
            return False
        total = sum(piece_length(piece) for piece in pieces)
        if not self.usable() or total > cycle.expected_content_length:
            raise RuntimeError("file pieces do not fit the response being sent")
        sock = os.dup(self._transport.get_extra_info("socket").fileno())
        lane = ThreadLane()
        try:
            await self._drain_transport(sock)
            await self._send_all(sock, lane, pieces)
        except _GONE:
            cycle.disconnected = True
            self._transport.abort()
            return False
        finally:
            await lane.settle()
            os.close(sock)
        cycle.expected_content_length -= total
        return True

    async def _send_all(self, sock: int, lane: ThreadLane, pieces: Sequence[Piece]) -> None:
        cursor = _Cursor()
        while not await lane.run(_push, sock, pieces, cursor, THREAD_WAIT_MS):
            await _until_writable(sock)

    async def _drain_transport(self, sock: int) -> None:
        """Wait until the transport has written what it holds (the response head)."""
        while self._transport.get_write_buffer_size() > 0:
            if self._transport.is_closing():
                raise ConnectionAbortedError("connection closed")
            await _until_writable(sock)
            await asyncio.sleep(0)


async def _until_writable(sock: int) -> None:
    """Wait on the event loop until ``sock`` can take more bytes (or has failed)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(sock, wake)
    try:
        await ready
    finally:
        with contextlib.suppress(OSError, ValueError):
            loop.remove_writer(sock)


def file_sender(scope: Any) -> FileSender | None:
    """The request's :class:`FileSender`, when the server offers one."""
    sender = scope.get("extensions", {}).get(SENDFILE_EXTENSION)
    return sender if isinstance(sender, FileSender) else None


class SendfileHttpToolsProtocol(PiecewiseBodyProtocol):
    """uvicorn's httptools protocol, offering a :class:`FileSender` to plain-HTTP requests.

    Never over TLS: ``sendfile`` would put the file bytes on the wire unencrypted.
    """

    def on_headers_complete(self) -> None:
        scope = self.scope
        super().on_headers_complete()
        cycle = self.cycle
        # The request's task starts on the next loop turn, so the scope may still grow.
        if cycle is not None and cycle.scope is scope and self.scheme == "http":
            extensions = cast("dict[str, object]", scope.setdefault("extensions", {}))
            extensions[SENDFILE_EXTENSION] = FileSender(self.transport, cycle)
