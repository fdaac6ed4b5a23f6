"""Kafka transport: a publisher for the outbox relay and a consumer-group runner.

Messages are CloudEvents in binary mode (see :mod:`skypacs.events.model`), keyed by
StudyInstanceUID so each study's events stay in order on one partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from skypacs.config import KafkaSettings
from skypacs.errors import DependencyUnavailable
from skypacs.event_wait import wait_event

from .bus import EventHandler
from .model import Event, MalformedEvent, decode_kafka, kafka_headers, kafka_key, kafka_value

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Client options shared by producers, consumers and the admin client."""
    if not settings.bootstrap_servers:
        raise DependencyUnavailable("Kafka bootstrap servers are not configured")
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "request_timeout_ms": settings.request_timeout_ms,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context()
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


async def ensure_topic(settings: KafkaSettings, *, partitions: int, replication: int) -> None:
    """Create the events topic unless it exists; DependencyUnavailable on failure."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    try:
        await admin.start()
        if settings.topic in await admin.list_topics():
            return
        response = await admin.create_topics(
            [NewTopic(settings.topic, num_partitions=partitions, replication_factor=replication)]
        )
        for _topic, code, message in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise DependencyUnavailable(f"cannot create Kafka topic: {message or code}")
    except KafkaError as exc:
        raise DependencyUnavailable(f"Kafka unreachable: {type(exc).__name__}") from exc
    finally:
        await admin.close()


class KafkaPublisher:
    """Publishes events to one topic and returns only once the broker has them all.

    The producer uses ``acks="all"`` and is started lazily, so a broker that is down
    at startup only delays delivery. Any failure closes the producer (a fresh one,
    with fresh metadata, is started on the next call) and raises
    :class:`DependencyUnavailable`, leaving the relay to retry the batch.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        create_topic: bool = True,
        topic_partitions: int = 12,
        topic_replication: int = 1,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic
        self._create_topic = create_topic
        self._partitions = topic_partitions
        self._replication = topic_replication
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is not None:
                return self._producer
            if self._create_topic:
                await ensure_topic(
                    self.settings, partitions=self._partitions, replication=self._replication
                )
            producer = AIOKafkaProducer(
                **connection_options(self.settings),
                acks="all",
                enable_idempotence=self.settings.idempotent,
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise DependencyUnavailable(f"Kafka unreachable: {type(exc).__name__}") from exc
            self._producer = producer
            return producer

    async def _reset(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError as exc:
                log.warning("closing Kafka producer failed: %s", type(exc).__name__)

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        producer = await self._started()
        try:
            # Sends are queued in order; aiokafka keeps one request in flight per
            # broker, so per-partition order survives retries.
            deliveries = [
                await producer.send(
                    self.topic,
                    value=kafka_value(event),
                    key=kafka_key(event),
                    headers=kafka_headers(event),
                )
                for event in events
            ]
            results = await asyncio.gather(*deliveries, return_exceptions=True)
        except KafkaError as exc:
            await self._reset()
            raise DependencyUnavailable(f"Kafka send failed: {type(exc).__name__}") from exc
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            await self._reset()
            name = type(failures[0]).__name__
            raise DependencyUnavailable(f"Kafka did not acknowledge {len(failures)} events: {name}")

    async def ping(self) -> None:
        producer = await self._started()
        try:
            async with asyncio.timeout(self.settings.request_timeout_ms / 1000):
                await producer.client.fetch_all_metadata()
        except (KafkaError, TimeoutError) as exc:
            await self._reset()
            raise DependencyUnavailable(f"Kafka unreachable: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self._reset()


class KafkaConsumerRunner:
    """Runs a consumer group member that hands each event to ``handler``.

    Offsets are committed only after the handler returned for every earlier message
    of the partition (``enable_auto_commit=False``), so events whose handling did
    not finish are delivered again, to this member or to the next owner of the
    partition. A handler that raises has its message retried after ``retry_backoff_s``
    (the partition waits: per-study order holds). Messages that are not CloudEvents
    are logged and skipped. Delivery is at least once: handlers must be idempotent.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        handler: EventHandler,
        retry_backoff_s: float = 2.0,
        max_batch: int = 500,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.handler = handler
        self.retry_backoff_s = retry_backoff_s
        self.max_batch = max_batch
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Join the group; DependencyUnavailable when the broker is unreachable."""
        consumer = AIOKafkaConsumer(
            self.settings.topic,
            **connection_options(self.settings),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise DependencyUnavailable(f"Kafka unreachable: {type(exc).__name__}") from exc
        self._consumer = consumer
        self._stopping.clear()

    async def run(self) -> None:
        """Consume until :meth:`stop` is called (starting first if needed)."""
        if self._consumer is None:
            await self.start()
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=self.max_batch)
                for partition, messages in batch.items():
                    if self._stopping.is_set():
                        break
                    await self._handle_partition(consumer, partition, messages)
        finally:
            self._consumer = None
            await consumer.stop()

    async def _handle_partition(
        self,
        consumer: AIOKafkaConsumer,
        partition: TopicPartition,
        messages: Sequence[ConsumerRecord[bytes, bytes]],
    ) -> None:
        done: int | None = None
        for message in messages:
            if self._stopping.is_set():
                break
            if not await self._handle(message):
                consumer.seek(partition, message.offset)
                break
            done = message.offset
        if done is not None:
            await self._commit(consumer, partition, done + 1)
        if done is None or done != messages[-1].offset:
            await self._pause()

    async def _commit(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int
    ) -> None:
        try:
            await consumer.commit({partition: offset})
        except KafkaError as exc:
            # Typically a rebalance moved the partition: its new owner re-reads
            # from the last committed offset, so these events come again.
            log.warning("offset commit failed: %s", type(exc).__name__)

    async def _handle(self, message: ConsumerRecord[bytes, bytes]) -> bool:
        try:
            event = decode_kafka(message.key, message.value, message.headers)
        except MalformedEvent as exc:
            log.warning("skipping message at offset %s: %s", message.offset, exc)
            return True
        try:
            await self.handler(event)
        except Exception as exc:
            log.error(
                "event handler failed on event %s (%s): %s",
                event.id,
                event.type,
                type(exc).__name__,
            )
            return False
        return True

    async def _pause(self) -> None:
        if not self._stopping.is_set():
            await wait_event(self._stopping, self.retry_backoff_s)

    async def stop(self) -> None:
        """Ask :meth:`run` to finish after the message in hand; nothing more is committed."""
        self._stopping.set()
