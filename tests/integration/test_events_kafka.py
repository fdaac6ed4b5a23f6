"""Events over a real Kafka-protocol broker (Tansu): relay, outage, consumer groups."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import asyncpg
import pytest

from skypacs.config import EventsSettings, KafkaSettings, Settings
from skypacs.errors import DependencyUnavailable
from skypacs.events import Event, KafkaConsumerRunner, KafkaPublisher, new_event, open_events
from skypacs.index import Index, outbox
from tests.fixtures.kafka import TansuBroker, kafka_test_settings

pytestmark = pytest.mark.integration

WAIT_S = 120
STUDIES = [f"1.2.826.0.1.3680043.8.498.{n}" for n in range(1, 6)]


def make(n: int, study: str) -> Event:
    return new_event(
        "instance.stored",
        partition_key=study,
        subject=f"studies/{study}",
        data={"n": n},
        source="/skypacs/test",
    )


class Collector:
    """A consumer handler that records events and signals once it saw all ``expected``."""

    def __init__(self, expected: Sequence[Event]) -> None:
        self.expected = {event.id for event in expected}
        self.events: list[Event] = []
        self.ids: set[uuid.UUID] = set()
        self.done = asyncio.Event()

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.ids.add(event.id)
        if self.expected <= self.ids:
            self.done.set()


async def consume_until(
    settings: KafkaSettings, group: str, collector: Collector, **options: float
) -> None:
    runner = KafkaConsumerRunner(settings, group_id=group, handler=collector, **options)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(WAIT_S):
            await collector.done.wait()
    finally:
        await runner.stop()
        await task


async def wait_for(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_published_events_arrive_with_their_attributes(
    kafka_settings: KafkaSettings,
) -> None:
    publisher = KafkaPublisher(kafka_settings, topic_partitions=3)
    sent = [replace(make(n, STUDIES[n % 2]), feed_seq=n + 1) for n in range(6)]
    try:
        await publisher.ping()
        await publisher.publish(sent)
    finally:
        await publisher.aclose()
    collector = Collector(sent)
    await consume_until(kafka_settings, "attributes", collector)
    assert sorted(collector.events, key=lambda e: e.feed_seq or 0) == sent


async def test_publisher_reports_an_unreachable_broker(restartable_kafka: TansuBroker) -> None:
    publisher = KafkaPublisher(kafka_test_settings(restartable_kafka.bootstrap_servers))
    try:
        with pytest.raises(DependencyUnavailable):
            await publisher.publish([make(1, STUDIES[0])])
        with pytest.raises(DependencyUnavailable):
            await publisher.ping()
    finally:
        await publisher.aclose()


async def test_publisher_recovers_when_the_broker_comes_back(
    restartable_kafka: TansuBroker,
) -> None:
    settings = kafka_test_settings(restartable_kafka.bootstrap_servers)
    publisher = KafkaPublisher(settings, topic_partitions=1)
    try:
        await restartable_kafka.start()
        await publisher.publish([make(1, STUDIES[0])])
        await restartable_kafka.stop()
        with pytest.raises(DependencyUnavailable):
            await publisher.publish([make(2, STUDIES[0])])
        # Same port, empty in-memory storage: the publisher reconnects and
        # recreates its topic.
        await restartable_kafka.start()
        after = [make(3, STUDIES[0])]
        await publisher.publish(after)
    finally:
        await publisher.aclose()
    collector = Collector(after)
    await consume_until(settings, "after-restart", collector)
    assert collector.events == after


async def append_interleaved(
    pool: asyncpg.Pool, *, writers: int, transactions: int, per_tx: int
) -> list[Event]:
    """Concurrent writers, each committing transactions that mix every study."""
    written: list[Event] = []

    async def writer(w: int) -> None:
        for t in range(transactions):
            base = (w * transactions + t) * per_tx
            batch = [make(n, STUDIES[n % len(STUDIES)]) for n in range(base, base + per_tx)]
            async with pool.acquire() as conn, conn.transaction():
                await outbox.append_many(conn, batch)
            written.extend(batch)

    await asyncio.gather(*(writer(w) for w in range(writers)))
    return written


async def feed_order_by_study(pool: asyncpg.Pool) -> dict[str, list[uuid.UUID]]:
    rows = await pool.fetch("SELECT event_id, partition_key FROM outbox ORDER BY feed_seq")
    order: dict[str, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        order[row["partition_key"]].append(row["event_id"])
    return order


def first_seen_by_study(events: Sequence[Event]) -> dict[str, list[uuid.UUID]]:
    """Per study, ids in arrival order, duplicates (at-least-once) dropped."""
    order: dict[str, list[uuid.UUID]] = defaultdict(list)
    seen: set[uuid.UUID] = set()
    for event in events:
        if event.id not in seen:
            seen.add(event.id)
            order[event.partition_key].append(event.id)
    return order


async def test_events_written_during_a_broker_outage_are_all_delivered_in_order(
    pg_pool: asyncpg.Pool, restartable_kafka: TansuBroker
) -> None:
    kafka = kafka_test_settings(restartable_kafka.bootstrap_servers)
    settings = Settings(
        events=EventsSettings(kafka=kafka, relay_poll_interval_s=0.05, relay_retry_backoff_s=0.2)
    )
    async with open_events(settings, Index(pool=pg_pool), relay=True) as events:
        relay = events.relay
        assert relay is not None
        # The broker is down: ingest-side appends still commit, the relay fails and waits.
        written = await append_interleaved(pg_pool, writers=5, transactions=10, per_tx=20)

        async def relay_failed() -> bool:
            return relay.failures > 0

        await wait_for(relay_failed)
        assert await outbox.get_cursor(pg_pool, relay.name) == 0

        await restartable_kafka.start()
        await wait_for(lambda: _relayed_everything(pg_pool, relay.name))

    assert len(written) == 1000
    collector = Collector(written)
    await consume_until(kafka, "outage-check", collector)
    assert collector.ids == {event.id for event in written}
    assert first_seen_by_study(collector.events) == await feed_order_by_study(pg_pool)


async def _relayed_everything(pool: asyncpg.Pool, cursor: str) -> bool:
    pending = await pool.fetchval("SELECT count(*) FROM outbox WHERE feed_seq IS NULL")
    head = await outbox.feed_head(pool)
    return bool(pending == 0 and await outbox.get_cursor(pool, cursor) == head)


async def publish_numbered(settings: KafkaSettings, count: int) -> list[Event]:
    sent = [replace(make(n, STUDIES[0]), feed_seq=n + 1) for n in range(count)]
    publisher = KafkaPublisher(settings, topic_partitions=1)
    try:
        await publisher.publish(sent)
    finally:
        await publisher.aclose()
    return sent


async def test_a_failed_handler_leaves_its_event_for_the_next_group_member(
    kafka_settings: KafkaSettings,
) -> None:
    sent = await publish_numbered(kafka_settings, 30)
    handled: list[Event] = []
    failed = asyncio.Event()

    async def fail_on_eleventh(event: Event) -> None:
        if event.id == sent[10].id:
            failed.set()
            raise RuntimeError("handler crashed")
        handled.append(event)

    first = KafkaConsumerRunner(
        kafka_settings, group_id="workers", handler=fail_on_eleventh, retry_backoff_s=600
    )
    task = asyncio.create_task(first.run())
    async with asyncio.timeout(WAIT_S):
        await failed.wait()
    await first.stop()
    await task
    assert handled == sent[:10]

    successor = Collector(sent[10:])
    await consume_until(kafka_settings, "workers", successor)
    assert successor.events == sent[10:]


async def test_a_killed_consumer_does_not_commit_what_it_did_not_finish(
    kafka_settings: KafkaSettings,
) -> None:
    sent = await publish_numbered(kafka_settings, 30)
    reached = asyncio.Event()

    async def hang_on_fifth(event: Event) -> None:
        if event.id == sent[4].id:
            reached.set()
            await asyncio.Event().wait()

    victim = KafkaConsumerRunner(kafka_settings, group_id="killed", handler=hang_on_fifth)
    task = asyncio.create_task(victim.run())
    async with asyncio.timeout(WAIT_S):
        await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    successor = Collector(sent[4:])
    await consume_until(kafka_settings, "killed", successor)
    # Redelivery starts at or before the unfinished event and then misses nothing.
    first = sent.index(successor.events[0])
    assert first <= 4
    assert successor.events == sent[first:]
