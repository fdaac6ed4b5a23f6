"""The outbox: lifecycle events written with the change they describe, and the feed.

Writers :func:`append` rows inside their own transaction, so an event exists if and
only if its change committed. A single sequencer (:func:`sequence_pending`, guarded by
a transaction-level advisory lock) then gives each row a ``feed_seq``, in ``seq``
order, once the writing transaction has committed *and* every transaction older
than it has finished (``txid < pg_snapshot_xmin(pg_current_snapshot())``). A row
whose writer is still open therefore holds back every later row, and the change
feed ordered by ``feed_seq`` only ever grows at its end: a reader that has passed a
position never misses a row behind it.

Readers (the Kafka relay, the in-process bus, the change-feed API) page through the
feed with :func:`fetch_after` and record progress with :func:`set_cursor`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson

from skypacs.events.model import Event

if TYPE_CHECKING:
    from .pool import Connection

    #: Anything that runs a single statement: the pool or one connection.
    Executor: TypeAlias = asyncpg.Pool | Connection

# Advisory lock key of the sequencer (one bigint key space; "SKYPACS1" as bytes).
SEQUENCER_LOCK_KEY = 0x534B595041435331
# First key of the two-key advisory locks that make each feed reader exclusive.
READER_LOCK_CLASS = 0x534B5950

_INSERT = """
INSERT INTO outbox (event_id, type, source, subject, partition_key, time, data)
VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)
"""

# The rows of several events in one statement, inserted (and so numbered) in
# their given order.
_INSERT_MANY = """
INSERT INTO outbox (event_id, type, source, subject, partition_key, time, data)
SELECT e.event_id, e.type, e.source, e.subject, e.partition_key, e.time, e.data::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::timestamptz[], $7::text[])
     WITH ORDINALITY AS e (event_id, type, source, subject, partition_key, time, data, position)
ORDER BY e.position
"""

_READY = """
SELECT seq FROM outbox
WHERE feed_seq IS NULL AND txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY seq
LIMIT $1
"""

_ASSIGN = """
UPDATE outbox AS o SET feed_seq = a.feed_seq
FROM unnest($1::bigint[], $2::bigint[]) AS a (seq, feed_seq)
WHERE o.seq = a.seq AND o.feed_seq IS NULL
"""

_FETCH_AFTER = """
SELECT event_id, type, source, subject, partition_key, time, data::text AS data, feed_seq
FROM outbox
WHERE feed_seq > $1
ORDER BY feed_seq
LIMIT $2
"""

_SET_CURSOR = """
INSERT INTO outbox_cursors (name, position) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE
SET position = GREATEST(outbox_cursors.position, EXCLUDED.position), updated_at = now()
"""


def _row_args(event: Event) -> tuple[Any, ...]:
    return (
        event.id,
        event.type,
        event.source,
        event.subject,
        event.partition_key,
        event.time,
        orjson.dumps(event.data).decode(),
    )


def _require_transaction(conn: Connection) -> None:
    if not conn.is_in_transaction():
        raise RuntimeError("outbox rows must be appended inside the writer's transaction")


async def append(conn: Connection, event: Event) -> None:
    """Append ``event`` in the caller's open transaction (committed with the change)."""
    _require_transaction(conn)
    await conn.execute(_INSERT, *_row_args(event))


async def append_many(conn: Connection, events: Sequence[Event]) -> None:
    """Append ``events``, in order, in the caller's open transaction (one statement)."""
    _require_transaction(conn)
    if len(events) == 1:
        await conn.execute(_INSERT, *_row_args(events[0]))
    elif events:
        rows = [_row_args(event) for event in events]
        await conn.execute(_INSERT_MANY, *(list(column) for column in zip(*rows, strict=True)))


async def sequence_pending(pool: asyncpg.Pool, *, limit: int) -> int:
    """Give up to ``limit`` safe rows their feed position; the number sequenced.

    Returns 0 at once when another replica holds the sequencer lock. Feed positions
    are drawn from ``outbox_feed_seq`` and handed out in ascending ``seq`` order.
    """
    async with pool.acquire() as conn, conn.transaction():
        locked = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEQUENCER_LOCK_KEY)
        if not locked:
            return 0
        # A new statement, so a new snapshot: it sees every row the previous
        # sequencer (which released the lock at commit) already placed.
        seqs = [row["seq"] for row in await conn.fetch(_READY, limit)]
        if not seqs:
            return 0
        positions = await conn.fetch(
            "SELECT nextval('outbox_feed_seq') AS v FROM generate_series(1, $1)", len(seqs)
        )
        feed = sorted(row["v"] for row in positions)
        await conn.execute(_ASSIGN, seqs, feed)
        return len(seqs)


def _event_from_row(row: asyncpg.Record) -> Event:
    return Event(
        id=row["event_id"],
        source=row["source"],
        type=row["type"],
        subject=row["subject"],
        time=row["time"],
        partition_key=row["partition_key"],
        data=orjson.loads(row["data"]),
        feed_seq=row["feed_seq"],
    )


async def fetch_after(db: Executor, position: int, limit: int) -> list[Event]:
    """Up to ``limit`` events of the change feed after ``position``, in feed order."""
    rows = await db.fetch(_FETCH_AFTER, position, limit)
    return [_event_from_row(row) for row in rows]


async def feed_head(db: Executor) -> int:
    """The last position in the change feed (0 when it is empty)."""
    head = await db.fetchval("SELECT coalesce(max(feed_seq), 0) FROM outbox")
    return int(head)


async def get_cursor(db: Executor, name: str) -> int:
    """The position reader ``name`` has finished with (0 for a new reader)."""
    position = await db.fetchval("SELECT position FROM outbox_cursors WHERE name = $1", name)
    return 0 if position is None else int(position)


async def set_cursor(db: Executor, name: str, position: int) -> None:
    """Record that reader ``name`` has finished with ``position``; never moves back."""
    await db.execute(_SET_CURSOR, name, position)


async def try_reader_lock(conn: Connection, name: str) -> bool:
    """Take the transaction-level lock that makes reader ``name`` exclusive.

    Two-key advisory locks live apart from the sequencer's one-key lock.
    """
    _require_transaction(conn)
    key = zlib.crc32(name.encode()) - 2**31
    locked = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", READER_LOCK_CLASS, key)
    return bool(locked)
