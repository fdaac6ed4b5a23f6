"""Events without Kafka: the relay feeds the in-process bus from the outbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import asyncpg
import pytest

from skypacs.config import EventsSettings, Settings
from skypacs.events import Event, EventType, OutboxRelay, new_event, open_events
from skypacs.index import Index, outbox

pytestmark = pytest.mark.integration

WAIT_S = 60


def settings() -> Settings:
    return Settings(events=EventsSettings(relay_poll_interval_s=0.05, relay_batch_size=7))


def make(kind: EventType, n: int, study: str) -> Event:
    return new_event(kind, partition_key=study, subject=None, data={"n": n}, source="test")


async def write(pool: asyncpg.Pool, events: Sequence[Event]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await outbox.append_many(conn, events)


async def test_committed_events_reach_subscribers_in_feed_order(pg_pool: asyncpg.Pool) -> None:
    received: list[int] = []
    completed: list[int] = []
    all_received = asyncio.Event()
    async with open_events(settings(), Index(pool=pg_pool), relay=True) as events:
        assert events.bus is not None
        assert events.relay is not None
        await events.ping()

        async def on_any(event: Event) -> None:
            received.append(event.data["n"])
            if len(received) == 40:
                all_received.set()

        async def on_completed(event: Event) -> None:
            completed.append(event.data["n"])
            raise RuntimeError("a broken consumer")

        events.bus.subscribe("*", on_any)
        events.bus.subscribe("study.completed", on_completed)
        for start in range(0, 40, 10):
            kinds = [EventType.INSTANCE_STORED] * 9 + [EventType.STUDY_COMPLETED]
            await write(pg_pool, [make(k, start + i, "1.2.3") for i, k in enumerate(kinds)])
        events.notify()
        async with asyncio.timeout(WAIT_S):
            await all_received.wait()
            await events.relay.wait_until(await outbox.feed_head(pg_pool))
    assert received == list(range(40))
    assert completed == [9, 19, 29, 39]
    assert await outbox.get_cursor(pg_pool, "in-process") == await outbox.feed_head(pg_pool)


class FlakyOnce:
    """A publisher whose first publish fails; a broker outage is tested with Kafka."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.failed = False

    async def publish(self, events: Sequence[Event]) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("destination down")
        self.batches.append([event.data["n"] for event in events])

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_a_failed_publish_is_retried_from_the_same_position(pg_pool: asyncpg.Pool) -> None:
    await write(pg_pool, [make(EventType.INSTANCE_STORED, n, "1.2.3") for n in range(5)])
    publisher = FlakyOnce()
    relay = OutboxRelay(pg_pool, publisher, name="flaky", batch_size=3)
    with pytest.raises(ConnectionError):
        await relay.drain_once()
    assert await outbox.get_cursor(pg_pool, "flaky") == 0
    while await relay.drain_once():
        pass
    assert publisher.batches == [[0, 1, 2], [3, 4]]
    assert await outbox.get_cursor(pg_pool, "flaky") == await outbox.feed_head(pg_pool)


async def test_two_relays_with_one_name_do_not_both_publish(pg_pool: asyncpg.Pool) -> None:
    await write(pg_pool, [make(EventType.INSTANCE_STORED, n, "1.2.3") for n in range(3)])
    first, second = FlakyOnce(), FlakyOnce()
    first.failed = second.failed = True
    async with pg_pool.acquire() as conn, conn.transaction():
        assert await outbox.try_reader_lock(conn, "shared")
        assert await OutboxRelay(pg_pool, second, name="shared").drain_once() == 0
    assert await OutboxRelay(pg_pool, first, name="shared").drain_once() == 3
    assert first.batches == [[0, 1, 2]]
    assert second.batches == []


async def test_commits_made_while_the_relay_lingers_go_out_together(
    pg_pool: asyncpg.Pool,
) -> None:
    """Three commits, each waking the relay, within its linger: one publish.

    The poll interval is long, so only the wake-ups can start a relay step.
    """
    publisher = FlakyOnce()
    publisher.failed = True
    relay = OutboxRelay(pg_pool, publisher, name="lingering", poll_interval_s=60, linger_s=1.0)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.2)  # the first step finds the feed empty, then idles
        for n in range(3):
            await write(pg_pool, [make(EventType.INSTANCE_STORED, n, "1.2.3")])
            relay.wake()
            await asyncio.sleep(0.1)  # time enough for a relay step that does not linger
        async with asyncio.timeout(WAIT_S):
            while sum(map(len, publisher.batches)) < 3:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert publisher.batches == [[0, 1, 2]]
