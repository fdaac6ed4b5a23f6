"""uvicorn, configured the one way every SkyPACS server process runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

import uvicorn

from skypacs.config import Settings
from skypacs.request_body import PiecewiseBodyProtocol
from skypacs.sendfile import SendfileHttpToolsProtocol

if TYPE_CHECKING:
    from fastapi import FastAPI

EXIT_OK = 0
EXIT_FAILURE = 1


def say(line: str, *, err: bool = False) -> None:
    """One line for the operator on stdout (or stderr), flushed at once."""
    stream = sys.stderr if err else sys.stdout
    stream.write(line + "\n")
    stream.flush()


def listening_banner(settings: Settings, host: str, port: int, workers: int = 1) -> str:
    """What the operator sees once the server accepts connections."""
    prefix = settings.http.dicomweb_prefix.rstrip("/")
    data_dir = settings.data_dir.resolve()
    processes = f"{workers} workers, " if workers > 1 else ""
    return f"SkyPACS listening on http://{host}:{port}{prefix} ({processes}data in {data_dir})"


def http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol passing request bodies on uncopied, with
    zero-copy file sends unless turned off (or the platform has no ``sendfile``)."""
    if not settings.http.sendfile or not hasattr(os, "sendfile"):
        return PiecewiseBodyProtocol
    return SendfileHttpToolsProtocol


def uvicorn_config(app: FastAPI, host: str, port: int, settings: Settings) -> uvicorn.Config:
    """Our logging, no access log of uvicorn's own, no ``Server`` header, our limits."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http=http_protocol(settings),
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        h11_max_incomplete_event_size=settings.http.max_header_bytes,
        timeout_graceful_shutdown=settings.http.shutdown_grace_s,
    )


def bound_port(server: uvicorn.Server) -> int:
    """The TCP port a started server listens on (resolves port 0)."""
    for listener in server.servers:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return int(server.config.port)


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that tells the operator where it listens once it is up."""

    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        super().__init__(config)
        self.settings = settings

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            say(listening_banner(self.settings, self.config.host, bound_port(self)))


def ignore_stop_signals() -> None:
    """Let uvicorn's own handlers be the only reaction to SIGINT and SIGTERM.

    uvicorn shuts down gracefully on either, then re-raises the signal under the
    handler that was installed before it ran; with the signals ignored here, a
    requested shutdown ends with exit status 0 instead of a traceback.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def run_single(app: FastAPI, host: str, port: int, settings: Settings) -> int:
    """Serve ``app`` in this process until SIGINT or SIGTERM."""
    server = AnnouncingServer(uvicorn_config(app, host, port, settings), settings)
    ignore_stop_signals()
    server.run()
    return EXIT_OK if server.started else EXIT_FAILURE
