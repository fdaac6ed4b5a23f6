"""Lifecycle events: CloudEvents from the outbox, relayed to Kafka or in-process.

Writers append events to the outbox in their own transaction
(:func:`skypacs.index.outbox.append`); :func:`open_events` runs the relay that
carries the change feed to Kafka when ``SKYPACS_EVENTS__KAFKA__BOOTSTRAP_SERVERS``
is set, or to the :class:`InProcessBus` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skypacs.config import Settings

from .bus import ALL_TYPES, EventHandler, EventPublisher, InProcessBus
from .model import Event, EventType, MalformedEvent, decode_kafka, new_event
from .relay import OutboxRelay

if TYPE_CHECKING:
    from skypacs.index import Index

    from .kafka import KafkaConsumerRunner, KafkaPublisher

__all__ = [
    "ALL_TYPES",
    "Event",
    "EventHandler",
    "EventPublisher",
    "EventType",
    "Events",
    "InProcessBus",
    "KafkaConsumerRunner",
    "KafkaPublisher",
    "MalformedEvent",
    "OutboxRelay",
    "decode_kafka",
    "new_event",
    "open_events",
]

IN_PROCESS_CURSOR = "in-process"
_KAFKA_NAMES = frozenset({"KafkaConsumerRunner", "KafkaPublisher"})


def __getattr__(name: str) -> Any:
    """The Kafka classes on first use: without a broker configured, aiokafka is never loaded."""
    if name in _KAFKA_NAMES:
        from . import kafka

        return getattr(kafka, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Events:
    """The event side of a running process."""

    publisher: EventPublisher
    bus: InProcessBus | None = None
    relay: OutboxRelay | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start_relay(self, relay: OutboxRelay) -> None:
        """Run ``relay`` in the background until :meth:`aclose`."""
        self.relay = relay
        self._task = asyncio.create_task(relay.run(), name="outbox-relay")

    def notify(self) -> None:
        """Tell the relay new events were committed, so it need not wait for its poll."""
        if self.relay is not None:
            self.relay.wake()

    async def ping(self) -> None:
        """Raise :class:`skypacs.errors.DependencyUnavailable` if the broker is unreachable."""
        await self.publisher.ping()

    async def aclose(self) -> None:
        """Stop the relay (unpublished events stay in the outbox) and the publisher."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.publisher.aclose()


def relay_cursor_name(settings: Settings) -> str:
    """The outbox cursor of this deployment's relay (one per destination)."""
    kafka = settings.events.kafka
    return f"kafka:{kafka.topic}" if kafka.bootstrap_servers else IN_PROCESS_CURSOR


def _make_publisher(settings: Settings) -> tuple[EventPublisher, InProcessBus | None]:
    if settings.events.kafka.bootstrap_servers:
        from .kafka import KafkaPublisher

        kafka = settings.events.kafka
        publisher = KafkaPublisher(
            kafka,
            create_topic=kafka.create_topic,
            topic_partitions=kafka.topic_partitions,
            topic_replication=kafka.topic_replication_factor,
        )
        return publisher, None
    bus = InProcessBus()
    return bus, bus


@contextlib.asynccontextmanager
async def open_events(settings: Settings, index: Index, *, relay: bool) -> AsyncIterator[Events]:
    """Open the publisher and, with ``relay``, run the outbox relay in the background.

    Leaving the context cancels the relay cleanly; a batch in flight is simply
    offered again by the next relay (at-least-once).
    """
    publisher, bus = _make_publisher(settings)
    events = Events(publisher=publisher, bus=bus)
    if relay:
        config = settings.events
        outbox_relay = OutboxRelay(
            index.pool,
            publisher,
            name=relay_cursor_name(settings),
            batch_size=config.relay_batch_size,
            poll_interval_s=config.relay_poll_interval_s,
            retry_backoff_s=config.relay_retry_backoff_s,
            linger_s=config.relay_linger_s,
        )
        events.start_relay(outbox_relay)
    try:
        yield events
    finally:
        await events.aclose()
