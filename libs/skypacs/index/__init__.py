"""The Postgres index: pool, migrations and (in submodules) every SQL statement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from skypacs.config import Settings
from skypacs.errors import DependencyUnavailable

from .embedded import EmbeddedPostgres
from .migrator import apply_migrations, pending_migrations
from .pool import UNAVAILABLE_ERRORS, create_pool

__all__ = ["Index", "open_index", "run_migrations"]


@dataclass
class Index:
    """An open index: the pool, and the embedded server if one was started."""

    pool: asyncpg.Pool
    embedded: EmbeddedPostgres | None = None
    ping_timeout_s: float = 2.0

    async def ping(self) -> None:
        """Raise :class:`DependencyUnavailable` unless a trivial query succeeds."""
        try:
            async with asyncio.timeout(self.ping_timeout_s):
                await self.pool.fetchval("SELECT 1")
        except UNAVAILABLE_ERRORS as exc:
            raise DependencyUnavailable(f"index unreachable: {type(exc).__name__}") from exc


@asynccontextmanager
async def _database_dsn(settings: Settings) -> AsyncIterator[tuple[str, EmbeddedPostgres | None]]:
    if settings.index.dsn is not None:
        yield settings.index.dsn.get_secret_value(), None
        return
    embedded = EmbeddedPostgres(settings.data_dir / "postgres")
    dsn = await embedded.start()
    try:
        yield dsn, embedded
    finally:
        await embedded.stop()


@asynccontextmanager
async def open_index(settings: Settings, *, migrate: bool) -> AsyncIterator[Index]:
    """Open the index (starting an embedded server when no DSN is set).

    With ``migrate`` the schema is brought up to date first; otherwise a schema
    that is behind this release is reported as an error naming ``skypacs migrate``.
    """
    async with _database_dsn(settings) as (dsn, embedded):
        pool = await create_pool(dsn, settings.index)
        try:
            async with pool.acquire() as conn:
                if migrate or settings.index.migrate_on_start:
                    await apply_migrations(conn)
                else:
                    pending = await pending_migrations(conn)
                    if pending:
                        raise DependencyUnavailable(
                            f"index schema is behind this release ({', '.join(pending)} "
                            "pending); run `skypacs migrate`"
                        )
            yield Index(pool=pool, embedded=embedded)
        finally:
            await pool.close()


async def run_migrations(settings: Settings) -> list[str]:
    """Apply pending migrations (``skypacs migrate``); return the names applied."""
    async with _database_dsn(settings) as (dsn, _embedded):
        pool = await create_pool(dsn, settings.index)
        try:
            async with pool.acquire() as conn:
                return await apply_migrations(conn)
        finally:
            await pool.close()
