"""The outbox relay: moves the change feed to a publisher, at least once, in order.

Each step runs the sequencer, reads the feed after the relay's cursor, hands the
batch to the publisher and, only once the publisher returned, advances the cursor
in the same transaction that holds the relay's exclusive lock. A failed publish
leaves the cursor where it was, so the same events (in the same order) are offered
again after a back-off: nothing is lost or reordered, and ingest never waits for
the publisher because writers only ever touch the outbox table.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from skypacs.event_wait import wait_event
from skypacs.index import outbox

from .bus import EventPublisher

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


class OutboxRelay:
    """Relays the change feed to ``publisher``, tracking progress as cursor ``name``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: EventPublisher,
        *,
        name: str,
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
        retry_backoff_s: float = 2.0,
        linger_s: float = 0.0,
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        self.name = name
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retry_backoff_s = retry_backoff_s
        self.linger_s = linger_s
        self.position = 0
        self.failures = 0
        self._progress = asyncio.Condition()
        self._wake = asyncio.Event()

    async def drain_once(self) -> int:
        """One relay step; the number of events published (0 if idle or not leader)."""
        await outbox.sequence_pending(self.pool, limit=self.batch_size)
        async with self.pool.acquire() as conn, conn.transaction():
            if not await outbox.try_reader_lock(conn, self.name):
                return 0
            position = await outbox.get_cursor(conn, self.name)
            events = await outbox.fetch_after(conn, position, self.batch_size)
            if events:
                await self.publisher.publish(events)
                position = events[-1].feed_seq or position
                await outbox.set_cursor(conn, self.name, position)
        await self._advance(position)
        return len(events)

    async def _advance(self, position: int) -> None:
        async with self._progress:
            self.position = max(self.position, position)
            self._progress.notify_all()

    async def wait_until(self, position: int) -> None:
        """Return once the relay has published the feed up to ``position``."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.position >= position)

    def wake(self) -> None:
        """Skip the current idle wait (for example right after a write committed)."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled; failures are logged and retried with back-off.

        A full batch is followed by the next one at once (a backlog); anything
        less means the feed was drained, so the relay waits for a wake-up or
        its poll interval. After a wake-up it lingers ``linger_s`` so that the
        commits of that moment go out in one step rather than one step each.
        """
        while True:
            try:
                published = await self.drain_once()
            except Exception as exc:
                await self._failed(exc)
                continue
            self.failures = 0
            if published < self.batch_size:
                await self._idle(self.poll_interval_s)

    async def _failed(self, exc: Exception) -> None:
        self.failures += 1
        delay = min(self.retry_backoff_s * 2 ** (self.failures - 1), MAX_BACKOFF_S)
        log.warning(
            "outbox relay %s failed (%s), retrying in %.1fs",
            self.name,
            type(exc).__name__,
            delay,
        )
        await asyncio.sleep(delay)

    async def _idle(self, seconds: float) -> None:
        try:
            if not await wait_event(self._wake, seconds):
                return
        finally:
            self._wake.clear()
        if self.linger_s:
            await asyncio.sleep(self.linger_s)
