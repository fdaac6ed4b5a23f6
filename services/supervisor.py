"""Several server processes on one listening socket (``SKYPACS_HTTP__WORKERS``).

The supervisor holds what exists once per server: the listening socket, whose
connections it accepts and hands to the workers in turn
(:mod:`services.connection_handoff`); the embedded Postgres, started before
the workers and stopped after them; and the directory where the workers'
Prometheus metrics meet. Workers are spawned, not forked, so each starts with
its own event loop, pools and threads.
A worker that dies is replaced, unless it exited with an error status before
it ever started (a bad setting, an index it cannot open): then the whole server
stops, because a replacement would fail the same way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import cast

import uvicorn
from prometheus_client import multiprocess
from pydantic import SecretStr

from skypacs.config import Settings
from skypacs.index.embedded import EmbeddedPostgres
from skypacs.observability import MULTIPROCESS_DIR_ENV, configure_logging

from .apps import APPS
from .connection_handoff import ConnectionIntake, Dispatcher, Route, channel_pair
from .http_server import (
    EXIT_FAILURE,
    EXIT_OK,
    ignore_stop_signals,
    listening_banner,
    say,
    uvicorn_config,
)

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
_POLL_S = 0.5
#: Beyond the graceful shutdown of a worker, how long before it is killed.
_KILL_MARGIN_S = 10.0
_LISTEN_BACKLOG = 2048


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to build and run its app (sent by pickle)."""

    command: str
    settings: Settings
    host: str
    port: int


class _WorkerServer(uvicorn.Server):
    """A uvicorn server fed by the supervisor's hand-off channel, not a listening socket."""

    def __init__(self, config: uvicorn.Config, started: Event, channel: socket.socket) -> None:
        super().__init__(config)
        self._started_event = started
        self._channel = channel
        self._intake: ConnectionIntake | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        if not self.started:
            return
        config = self.config
        # uvicorn's protocol classes take these keywords; the attribute is typed loosely.
        protocol_class = cast("Callable[..., asyncio.Protocol]", config.http_protocol_class)
        protocol_factory = functools.partial(
            protocol_class,
            config=config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self._intake = ConnectionIntake(self._channel, protocol_factory, self._supervisor_gone)
        self._intake.start()
        self._started_event.set()

    def _supervisor_gone(self) -> None:
        """Stop as on SIGTERM once the supervisor is gone (killed, say, by the OOM killer)."""
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._intake is not None:
            self._intake.stop()
        await super().shutdown(sockets)


def worker_main(spec: WorkerSpec, channel: socket.socket, started: Event) -> None:
    """Entry point of one worker process: serve what ``channel`` brings until SIGTERM."""
    ignore_stop_signals()
    configure_logging(spec.settings.log)
    factory, _help = APPS[spec.command]
    config = uvicorn_config(factory(spec.settings), spec.host, spec.port, spec.settings)
    server = _WorkerServer(config, started, channel)
    server.run()
    if not server.started:
        raise SystemExit(EXIT_FAILURE)


@dataclass
class _Worker:
    process: BaseProcess
    route: Route

    def close(self) -> None:
        """Forget a worker that has exited: its channel and its live gauges."""
        self.route.channel.close()
        _forget_metrics(self.process.pid)


class Supervisor:
    """Runs ``count`` workers of ``spec`` on ``sock`` until SIGINT or SIGTERM."""

    def __init__(self, spec: WorkerSpec, sock: socket.socket, count: int) -> None:
        self.spec = spec
        self.sock = sock
        self.count = count
        self._stop = threading.Event()
        self._status = EXIT_OK

    def _spawn(self) -> _Worker:
        started = _SPAWN.Event()
        supervisor_end, worker_end = channel_pair()
        with worker_end:
            process = _SPAWN.Process(
                target=worker_main, args=(self.spec, worker_end, started), name="skypacs-worker"
            )
            process.start()
        return _Worker(process, Route(supervisor_end, started))

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stop.set()

    def run(self) -> int:
        """Start the workers, watch them, stop them all; the exit status."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        workers = [self._spawn() for _ in range(self.count)]
        dispatcher = Dispatcher(self.sock, lambda: [worker.route for worker in workers])
        dispatcher.start()
        announced = False
        try:
            while not self._stop.wait(_POLL_S):
                self._replace_exited(workers)
                if not announced and all(worker.route.started.is_set() for worker in workers):
                    port = int(self.sock.getsockname()[1])
                    say(listening_banner(self.spec.settings, self.spec.host, port, self.count))
                    announced = True
        finally:
            dispatcher.stop()
            self._stop_all(workers)
        return self._status

    def _replace_exited(self, workers: list[_Worker]) -> None:
        for position, worker in enumerate(workers):
            if worker.process.is_alive():
                continue
            worker.process.join()
            worker.close()
            status = worker.process.exitcode
            if not worker.route.started.is_set() and status is not None and status > 0:
                log.error("worker process exited (status %s) before it started; stopping", status)
                self._status = EXIT_FAILURE
                self._stop.set()
                return
            log.warning(
                "worker process %s exited (status %s); starting a replacement",
                worker.process.pid,
                status,
            )
            workers[position] = self._spawn()

    def _stop_all(self, workers: list[_Worker]) -> None:
        """SIGTERM every worker (graceful), then SIGKILL what outlives the grace period."""
        for worker in workers:
            if worker.process.is_alive() and worker.process.pid is not None:
                os.kill(worker.process.pid, signal.SIGTERM)
        deadline = self.spec.settings.http.shutdown_grace_s + _KILL_MARGIN_S
        for worker in workers:
            worker.process.join(deadline)
            if worker.process.is_alive():
                log.warning("worker process %s did not stop in time; killed", worker.process.pid)
                worker.process.kill()
                worker.process.join()
            worker.close()


def _forget_metrics(pid: int | None) -> None:
    """Drop the live gauges of a worker that is gone (its counters stay summed)."""
    directory = os.environ.get(MULTIPROCESS_DIR_ENV)
    if pid is not None and directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def listen(host: str, port: int) -> socket.socket:
    """The listening socket all workers share.

    An IPv6 ``host`` binds IPv6; ``::`` also accepts IPv4 where the system can,
    as a single-process server bound to ``::`` does.
    """
    if ":" not in host:
        return socket.create_server((host, port), backlog=_LISTEN_BACKLOG)
    dualstack = host == "::" and socket.has_dualstack_ipv6()
    return socket.create_server(
        (host, port), family=socket.AF_INET6, backlog=_LISTEN_BACKLOG, dualstack_ipv6=dualstack
    )


@contextmanager
def metrics_directory() -> Iterator[Path]:
    """A fresh directory for the workers' metric files, exported to them by env var."""
    directory = Path(tempfile.mkdtemp(prefix="skypacs-metrics-"))
    os.environ[MULTIPROCESS_DIR_ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROCESS_DIR_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def shared_index(settings: Settings) -> Iterator[Settings]:
    """Settings for the workers, whose index is the same server.

    Without ``SKYPACS_INDEX__DSN`` the embedded Postgres is started here (and
    stopped after the workers) and its DSN handed to them. Each worker then
    opens its runtime as one process would (``serve`` migrates under the
    migrator's lock: the first worker applies what is pending, the others
    find nothing to do).
    """
    if settings.index.dsn is not None:
        yield settings
        return
    embedded = EmbeddedPostgres(settings.data_dir / "postgres")
    dsn = asyncio.run(embedded.start())
    try:
        index = settings.index.model_copy(update={"dsn": SecretStr(dsn)})
        yield settings.model_copy(update={"index": index})
    finally:
        asyncio.run(embedded.stop())


def run_workers(command: str, host: str, port: int, settings: Settings) -> int:
    """Serve ``command``'s app from ``settings.http.workers`` processes."""
    with (
        listen(host, port) as sock,
        metrics_directory(),
        shared_index(settings) as shared,
    ):
        spec = WorkerSpec(command=command, settings=shared, host=host, port=port)
        return Supervisor(spec, sock, settings.http.workers).run()
