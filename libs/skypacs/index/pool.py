"""The asyncpg connection pool and the codecs every connection uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson

from skypacs.config import IndexSettings
from skypacs.errors import DependencyUnavailable

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: A plain connection or one borrowed from a pool: every query helper takes either.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

#: Errors that mean "the index cannot be reached right now" (retry later).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    TimeoutError,
)


def encode_json(value: Any) -> str:
    """JSON text of ``value``, as the json/jsonb codec sends it."""
    return orjson.dumps(value).decode()


#: Array types that stores send as parameters. asyncpg knows only text[] and
#: oid[] from the start and looks any other up in the catalog the first time a
#: connection meets it, with a query Postgres plans anew each time (some 7 ms of
#: its CPU). Preparing this statement looks them all up in one go.
_ARRAY_TYPES = "SELECT $1::int8[], $2::int4[], $3::bytea[], $4::uuid[], $5::timestamptz[]"


async def init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Decode json/jsonb with orjson; learn the array types stores send."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=encode_json, decoder=orjson.loads, schema="pg_catalog"
        )
    await conn.prepare(_ARRAY_TYPES)


async def _keep_session(_conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Release a connection to the pool without asyncpg's reset query.

    asyncpg itself still rolls back a transaction left open. The default reset
    (``CLOSE ALL; UNLISTEN *; RESET ALL; pg_advisory_unlock_all()``) costs a
    round trip on every release, and SkyPACS leaves none of that behind:
    settings are ``SET LOCAL`` or ``set_config(..., true)``, advisory locks are
    transaction-scoped (the migrator unlocks its session lock itself), and
    there are no cursors outside transactions and no ``LISTEN``.
    """


async def create_pool(dsn: str, settings: IndexSettings) -> asyncpg.Pool:
    """Open a pool; an unreachable server raises :class:`DependencyUnavailable`."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            command_timeout=settings.command_timeout_s,
            timeout=settings.connect_timeout_s,
            init=init_connection,
            reset=_keep_session,
        )
    except UNAVAILABLE_ERRORS as exc:
        raise DependencyUnavailable(f"index database unreachable: {type(exc).__name__}") from exc
    assert pool is not None
    return pool
