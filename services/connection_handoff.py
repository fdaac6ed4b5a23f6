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
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event

log = logging.getLogger(__name__)

#: How often a blocked accept looks at the stop flag.
_ACCEPT_POLL_S = 0.5
#: How long to wait before trying again when no worker can take a connection.
_RETRY_S = 0.05
#: How long a connection may wait for a worker before it is closed.
_HANDOFF_DEADLINE_S = 10.0
#: Descriptors read from the channel per wake-up at most.
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


@dataclass
class Dispatcher:
    """Accepts on ``listener`` in a thread and hands each connection to a worker."""

    listener: socket.socket
    routes: Callable[[], Sequence[Route]]
    _stop: threading.Event = field(default_factory=threading.Event)
    _next: int = 0
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.listener.settimeout(_ACCEPT_POLL_S)
        self._thread = threading.Thread(target=self._run, name="connection-handoff", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting; connections still in the backlog are left to the listener's close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not any(route.started.is_set() for route in self.routes()):
                self._stop.wait(_RETRY_S)  # leave connections in the backlog meanwhile
                continue
            try:
                connection, _address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:  # out of descriptors, say: let the backlog wait
                log.warning("accept failed: %s", exc.strerror or exc)
                self._stop.wait(_RETRY_S)
                continue
            with connection:
                self._hand_over(connection)

    def _hand_over(self, connection: socket.socket) -> None:
        """Give ``connection`` to the next worker able to take it, or close it at the deadline."""
        waited = 0.0
        while not self._stop.is_set() and waited < _HANDOFF_DEADLINE_S:
            routes = self.routes()
            for offset in range(len(routes)):
                position = (self._next + offset) % len(routes)
                if routes[position].offer(connection):
                    self._next = position + 1
                    return
            self._stop.wait(_RETRY_S)
            waited += _RETRY_S
        log.warning("no worker could take a connection; it was closed")


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
