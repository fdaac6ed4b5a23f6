"""The outbox on a real Postgres: appends, the sequencer's prefix rule, cursors."""

from __future__ import annotations

import asyncpg
import pytest

from skypacs.events import Event, new_event
from skypacs.index import outbox

pytestmark = pytest.mark.integration


def make(n: int, study: str = "1.2.3") -> Event:
    return new_event(
        "instance.stored",
        partition_key=study,
        subject=f"studies/{study}",
        data={"n": n, "nested": {"list": [1, 2], "text": "é"}},
        source="/skypacs/test",
    )


async def append_committed(pool: asyncpg.Pool, *events: Event) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await outbox.append_many(conn, events)


async def test_append_outside_a_transaction_is_refused(pg_pool: asyncpg.Pool) -> None:
    async with pg_pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="transaction"):
            await outbox.append(conn, make(1))
    assert await pg_pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_feed_returns_events_as_written_in_append_order(pg_pool: asyncpg.Pool) -> None:
    written = [make(n) for n in range(5)]
    async with pg_pool.acquire() as conn, conn.transaction():
        await outbox.append(conn, written[0])
        await outbox.append_many(conn, written[1:])
    assert await outbox.fetch_after(pg_pool, 0, 10) == []
    assert await outbox.sequence_pending(pg_pool, limit=100) == 5
    feed = await outbox.fetch_after(pg_pool, 0, 10)
    assert [event.id for event in feed] == [event.id for event in written]
    first = feed[0]
    assert first.data == written[0].data
    assert first.time == written[0].time
    assert first.time.tzinfo is not None
    assert first.subject == "studies/1.2.3"
    assert first.type == "org.skypacs.instance.stored"
    positions = [event.feed_seq for event in feed]
    assert positions == sorted(positions)
    assert await outbox.feed_head(pg_pool) == positions[-1]
    assert [e.id for e in await outbox.fetch_after(pg_pool, feed[1].feed_seq or 0, 2)] == [
        written[2].id,
        written[3].id,
    ]


async def test_rolled_back_events_never_reach_the_feed(pg_pool: asyncpg.Pool) -> None:
    async with pg_pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await outbox.append(conn, make(1))
        await transaction.rollback()
    await append_committed(pg_pool, make(2))
    assert await outbox.sequence_pending(pg_pool, limit=100) == 1
    assert [e.data["n"] for e in await outbox.fetch_after(pg_pool, 0, 10)] == [2]


async def test_open_writer_holds_back_later_commits_until_it_commits(
    pg_pool: asyncpg.Pool,
) -> None:
    early, late = make(1), make(2)
    async with pg_pool.acquire() as slow, pg_pool.acquire() as fast:
        slow_tx = slow.transaction()
        await slow_tx.start()
        await outbox.append(slow, early)
        async with fast.transaction():
            await outbox.append(fast, late)

        # The later row is committed but an older writer is still open: it must
        # not get a feed position, or a reader could pass it before `early` lands.
        assert await outbox.sequence_pending(pg_pool, limit=100) == 0
        assert await outbox.fetch_after(pg_pool, 0, 10) == []
        assert await outbox.feed_head(pg_pool) == 0

        await slow_tx.commit()
    assert await outbox.sequence_pending(pg_pool, limit=100) == 2
    feed = await outbox.fetch_after(pg_pool, 0, 10)
    assert [event.id for event in feed] == [early.id, late.id]


async def test_an_older_open_transaction_holds_back_rows_of_newer_ones(
    pg_pool: asyncpg.Pool,
) -> None:
    async with pg_pool.acquire() as older, pg_pool.acquire() as newer:
        older_tx = older.transaction()
        await older_tx.start()
        await older.fetchval("SELECT pg_current_xact_id()")  # the older writer's id
        async with newer.transaction():
            await outbox.append(newer, make(1))
        assert await outbox.sequence_pending(pg_pool, limit=100) == 0
        await outbox.append(older, make(2))
        await older_tx.commit()
    assert await outbox.sequence_pending(pg_pool, limit=100) == 2
    assert [e.data["n"] for e in await outbox.fetch_after(pg_pool, 0, 10)] == [1, 2]


async def test_positions_given_later_are_always_beyond_earlier_ones(
    pg_pool: asyncpg.Pool,
) -> None:
    await append_committed(pg_pool, make(1), make(2))
    assert await outbox.sequence_pending(pg_pool, limit=1) == 1
    assert await outbox.sequence_pending(pg_pool, limit=1) == 1
    await append_committed(pg_pool, make(3))
    assert await outbox.sequence_pending(pg_pool, limit=10) == 1
    feed = await outbox.fetch_after(pg_pool, 0, 10)
    assert [e.data["n"] for e in feed] == [1, 2, 3]
    positions = [e.feed_seq or 0 for e in feed]
    assert positions == sorted(set(positions))


async def test_only_one_sequencer_runs_at_a_time(pg_pool: asyncpg.Pool) -> None:
    await append_committed(pg_pool, make(1))
    async with pg_pool.acquire() as other, other.transaction():
        await other.execute("SELECT pg_advisory_xact_lock($1)", outbox.SEQUENCER_LOCK_KEY)
        assert await outbox.sequence_pending(pg_pool, limit=100) == 0
    assert await outbox.sequence_pending(pg_pool, limit=100) == 1


async def test_cursors_start_at_zero_and_never_move_back(pg_pool: asyncpg.Pool) -> None:
    assert await outbox.get_cursor(pg_pool, "kafka:events") == 0
    await outbox.set_cursor(pg_pool, "kafka:events", 10)
    await outbox.set_cursor(pg_pool, "kafka:events", 4)
    assert await outbox.get_cursor(pg_pool, "kafka:events") == 10
    await outbox.set_cursor(pg_pool, "in-process", 3)
    assert await outbox.get_cursor(pg_pool, "kafka:events") == 10
    assert await outbox.get_cursor(pg_pool, "in-process") == 3


async def test_reader_lock_is_exclusive_per_name(pg_pool: asyncpg.Pool) -> None:
    async with pg_pool.acquire() as first, pg_pool.acquire() as second:
        async with first.transaction():
            assert await outbox.try_reader_lock(first, "kafka:events")
            async with second.transaction():
                assert not await outbox.try_reader_lock(second, "kafka:events")
                assert await outbox.try_reader_lock(second, "in-process")
        async with second.transaction():
            assert await outbox.try_reader_lock(second, "kafka:events")
