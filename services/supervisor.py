"""Several server processes on one listening socket (``SKYPACS_HTTP__WORKERS``).

The supervisor holds what exists once per server: the listening socket, whose
connections it accepts and hands to the workers in turn
(:mod:`services.connection_handoff`); the embedded Postgres, started before
the workers and stopped after them; and the directory where the workers'
Prometheus metrics meet. It loads the app's modules once and forks the
workers, which share those pages (tens of megabytes each) and start at once;
each then builds its own app, event loop, pools and threads. The supervisor
runs no thread of its own, so forking a replacement later is as safe as the
first fork.
A worker that dies is replaced, unless it exited with an error status before
it ever started (a bad setting, an index it cannot open): then the whole server
stops, because a replacement would fail the same way.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import multiprocessing
import os
import selectors
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
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
from skypacs.observability import MULTIPROCESS_DIR_ENV, adopt_metrics_mode, configure_logging

from .apps import APPS, AppFactory
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

_FORK = multiprocessing.get_context("fork")
_POLL_S = 0.5
#: Beyond the graceful shutdown of a worker, how long before it is killed.
_KILL_MARGIN_S = 10.0
_LISTEN_BACKLOG = 2048


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to build and run its app."""

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


def worker_main(
    spec: WorkerSpec,
    create_app: AppFactory,
    channel: socket.socket,
    started: Event,
    inherited: Sequence[socket.socket | selectors.BaseSelector],
) -> None:
    """Entry point of a forked worker: serve what ``channel`` brings until SIGTERM.

    ``inherited`` are the supervisor's sockets the fork copied: closed at once,
    so that only the supervisor holds the listener and the other channels (a
    worker holding a channel would hide the supervisor's death from it).
    """
    for item in inherited:
        item.close()
    ignore_stop_signals()
    adopt_metrics_mode()
    configure_logging(spec.settings.log)
    config = uvicorn_config(create_app(spec.settings), spec.host, spec.port, spec.settings)
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
        self.count = count
        self._create_app = APPS[spec.command].factory()  # loaded here, shared by every fork
        self._workers: list[_Worker] = []
        self._dispatcher = Dispatcher(sock, lambda: [worker.route for worker in self._workers])
        self._stopping = False
        self._status = EXIT_OK

    def _start_worker(self) -> _Worker:
        started = _FORK.Event()
        supervisor_end, worker_end = channel_pair()
        inherited = [
            *self._dispatcher.closables(),
            supervisor_end,
            *(worker.route.channel for worker in self._workers),
        ]
        with worker_end:
            process = _FORK.Process(
                target=worker_main,
                args=(self.spec, self._create_app, worker_end, started, inherited),
                name="skypacs-worker",
            )
            # What the supervisor has loaded lives as long as the workers: the
            # collector leaves it alone, so their pages stay shared after fork.
            gc.freeze()
            process.start()
        return _Worker(process, Route(supervisor_end, started))

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        """Start the workers, hand them connections, stop them all; the exit status."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        announced = False
        try:
            for _ in range(self.count):
                self._workers.append(self._start_worker())
            while not self._stopping:
                self._dispatcher.serve(_POLL_S)
                self._replace_exited()
                if not announced and all(w.route.started.is_set() for w in self._workers):
                    say(self._banner())
                    announced = True
        finally:
            self._dispatcher.close()
            self._stop_all()
        return self._status

    def _banner(self) -> str:
        port = int(self._dispatcher.listener.getsockname()[1])
        return listening_banner(self.spec.settings, self.spec.host, port, self.count)

    def _replace_exited(self) -> None:
        for position, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            worker.process.join()
            worker.close()
            status = worker.process.exitcode
            if not worker.route.started.is_set() and status is not None and status > 0:
                log.error("worker process exited (status %s) before it started; stopping", status)
                self._status = EXIT_FAILURE
                self._stopping = True
                return
            log.warning(
                "worker process %s exited (status %s); starting a replacement",
                worker.process.pid,
                status,
            )
            self._workers[position] = self._start_worker()

    def _stop_all(self) -> None:
        """SIGTERM every worker (graceful), then SIGKILL what outlives the grace period."""
        for worker in self._workers:
            if worker.process.is_alive() and worker.process.pid is not None:
                os.kill(worker.process.pid, signal.SIGTERM)
        deadline = self.spec.settings.http.shutdown_grace_s + _KILL_MARGIN_S
        for worker in self._workers:
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
