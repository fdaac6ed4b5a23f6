"""Connections accepted once by the supervisor and handed to the workers in turn.

When several processes accept on one shared socket, the kernel wakes them all
and whichever runs first takes every pending connection; with keep-alive
clients one worker can end up serving all of them while the others idle. So
the supervisor accepts, and passes each connection's descriptor to the next
worker over a Unix ``SOCK_SEQPACKET`` pair (``SCM_RIGHTS``): round robin over
the workers that have started, skipping one that is gone or whose queue is
full. A worker reads its channel on its event loop and serves each descriptor
as uvicorn would serve a connection it had accepted itself; the end of the
channel tells it that the supervisor is gone.
"""

from __future__ import annotations

import asyncio
import logging
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event

log = logging.getLogger(__name__)

#: How long to wait before trying again when no worker can take a connection.
_RETRY_S = 0.05
#: How long a connection may wait for a worker before it is closed.
_HANDOFF_DEADLINE_S = 10.0
#: Connections accepted, or descriptors read from a channel, per wake-up at most.
_BATCH = 64
_MARKER = b"c"


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """The supervisor's end and the worker's end of one hand-off channel."""
    supervisor_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    supervisor_end.setblocking(False)
    return supervisor_end, worker_end


@dataclass
class Route:
    """One worker as the dispatcher sees it: its channel and whether it serves yet."""

    channel: socket.socket
    started: Event

    def offer(self, connection: socket.socket) -> bool:
        """Queue ``connection`` for this worker; False if it is not serving or is full."""
        if not self.started.is_set():
            return False
        try:
            socket.send_fds(self.channel, [_MARKER], [connection.fileno()])
        except OSError:  # full (EAGAIN), or the worker is gone (EPIPE, ECONNREFUSED)
            return False
        return True


class Dispatcher:
    """Accepts on ``listener`` and hands each connection to a worker.

    Driven by the supervisor's loop (:meth:`serve`), with no thread of its own,
    so the supervisor stays single-threaded and can fork replacement workers
    safely. A connection no worker can take yet waits here, up to a deadline.
    """

    def __init__(self, listener: socket.socket, routes: Callable[[], Sequence[Route]]) -> None:
        self.listener = listener
        self.routes = routes
        listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ)
        self._waiting: deque[tuple[socket.socket, float]] = deque()
        self._next = 0

    def serve(self, timeout: float) -> None:
        """Hand over what arrives within ``timeout`` seconds (less if connections wait)."""
        self._retry_waiting()
        if not any(route.started.is_set() for route in self.routes()):
            time.sleep(min(timeout, _RETRY_S))  # leave connections in the backlog meanwhile
            return
        if self._selector.select(_RETRY_S if self._waiting else timeout):
            self._accept_ready()

    def closables(self) -> list[socket.socket | selectors.BaseSelector]:
        """What a forked worker must close: the listener and the selector."""
        return [self.listener, self._selector]

    def close(self) -> None:
        """Stop: connections still waiting are closed, the backlog is left to the listener."""
        for connection, _deadline in self._waiting:
            connection.close()
        self._waiting.clear()
        self._selector.close()

    def _accept_ready(self) -> None:
        for _ in range(_BATCH):
            try:
                connection, _address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of descriptors, say: let the backlog wait
                log.warning("accept failed: %s", exc.strerror or exc)
                return
            if self._hand_over(connection):
                connection.close()
            else:
                self._waiting.append((connection, time.monotonic() + _HANDOFF_DEADLINE_S))

    def _retry_waiting(self) -> None:
        now = time.monotonic()
        for _ in range(len(self._waiting)):
            connection, deadline = self._waiting.popleft()
            if self._hand_over(connection):
                connection.close()
            elif now >= deadline:
                log.warning("no worker could take a connection; it was closed")
                connection.close()
            else:
                self._waiting.append((connection, deadline))

    def _hand_over(self, connection: socket.socket) -> bool:
        """Give ``connection`` to the next worker able to take it (round robin)."""
        routes = self.routes()
        for offset in range(len(routes)):
            position = (self._next + offset) % len(routes)
            if routes[position].offer(connection):
                self._next = position + 1
                return True
        return False


class ConnectionIntake:
    """The worker's side: serve every connection that arrives on ``channel``."""

    def __init__(
        self,
        channel: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        on_supervisor_gone: Callable[[], None],
    ) -> None:
        self._channel = channel
        self._protocol_factory = protocol_factory
        self._on_supervisor_gone = on_supervisor_gone
        self._loop = asyncio.get_running_loop()
        self._pending: set[asyncio.Task[None]] = set()
        self._reading = False

    def start(self) -> None:
        self._channel.setblocking(False)
        self._loop.add_reader(self._channel.fileno(), self._on_readable)
        self._reading = True

    def stop(self) -> None:
        """Take no more connections (the supervisor sends the next ones elsewhere)."""
        if self._reading:
            self._loop.remove_reader(self._channel.fileno())
            self._reading = False
        self._channel.close()

    def _on_readable(self) -> None:
        for _ in range(_BATCH):
            try:
                message, descriptors, _flags, _address = socket.recv_fds(self._channel, 16, 1)
            except BlockingIOError:
                return
            except OSError:
                message, descriptors = b"", []
            if not message and not descriptors:
                log.warning("supervisor process is gone; worker stopping")
                self.stop()
                self._on_supervisor_gone()
                return
            for descriptor in descriptors:
                self._serve(socket.socket(fileno=descriptor))

    def _serve(self, connection: socket.socket) -> None:
        connection.setblocking(False)
        task = self._loop.create_task(self._connect(connection))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _connect(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._protocol_factory, connection)
        except OSError as exc:  # the client left before the worker got to it
            log.debug("handed-over connection dropped: %s", exc)
            connection.close()
