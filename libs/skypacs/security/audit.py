"""The audit trail: who read, stored or deleted which patient data, when, from where.

Each record goes two ways: a structured line on the ``skypacs.audit`` logger
(kept apart from the application log; who, what kind of access, route, outcome,
request id, but no UIDs or query strings) and a row with the UIDs in the
append-only ``audit_log`` table. Rows are
queued (bounded) and written in batches by a background task, off the request
path, which waits a moment (``audit_linger_s``) to gather the records of the
requests of that moment into one write; a full queue or a failed write is counted in
``skypacs_audit_records_dropped_total`` and logged, never lost silently.
:meth:`AuditTrail.aclose` flushes the queue on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import asyncpg
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from skypacs.index.audit_log import AuditRow, insert_audit_rows
from skypacs.observability import METRICS_PREFIX, audit_logger

__all__ = ["AuditTrail", "InstanceRef", "audit_action", "audit_metrics", "note_instances"]

log = logging.getLogger(__name__)

#: (study, series, instance, stored) for each instance a request touched.
InstanceRef = tuple[str | None, str | None, str | None, bool]
PoolSource = Callable[[], asyncpg.Pool | None]

STATE_KEY = "audit_instances"
_COLLECTIONS = frozenset({"studies", "series", "instances"})
_WRITE_ATTEMPTS = 3
#: Log lines share the process's output stream with the application log, which
#: must stay free of patient identifiers: UIDs and query strings live in the
#: table only, joined to a line by its request id.
_LOGGED_FIELDS = (
    "request_id", "subject", "key_name", "auth_method", "role", "action", "route",
    "client_address", "status", "outcome",
)  # fmt: skip


@cache
def audit_metrics(registry: CollectorRegistry = REGISTRY) -> tuple[Counter, Counter]:
    """``(written, dropped)`` audit record counters."""
    written = Counter(
        f"{METRICS_PREFIX}audit_records_written",
        "Audit records stored in the audit table.",
        registry=registry,
    )
    dropped = Counter(
        f"{METRICS_PREFIX}audit_records_dropped",
        "Audit records that could not be stored, by reason.",
        ("reason",),
        registry=registry,
    )
    return written, dropped


def audit_action(method: str, route: str) -> str:
    """``search`` (QIDO-RS), ``retrieve``, ``store``, ``delete`` or the verb."""
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        last = route.rstrip("/").rsplit("/", 1)[-1]
        return "search" if last in _COLLECTIONS else "retrieve"
    return {"POST": "store", "PUT": "store", "DELETE": "delete"}.get(verb, verb.lower())


def note_instances(state: Any, instances: Iterable[InstanceRef]) -> None:
    """Let the audit trail name each instance a request stored (``request.state``)."""
    setattr(state, STATE_KEY, list(instances))


class AuditTrail:
    """A bounded queue of audit rows drained in batches into the index."""

    def __init__(
        self, pool_source: PoolSource, *, queue_size: int, batch_size: int, linger_s: float = 0.0
    ) -> None:
        self._pool_source = pool_source
        self._queue: asyncio.Queue[AuditRow] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._writer: asyncio.Task[None] | None = None

    def record(self, row: AuditRow) -> None:
        """Log the record and queue it for the table (never blocks)."""
        audit_logger().info(
            "%s %s %s", row.subject, row.action, row.outcome,
            extra={name: getattr(row, name) for name in _LOGGED_FIELDS},
        )  # fmt: skip
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            audit_metrics()[1].labels("queue_full").inc()
            log.error("audit queue full: a record was not stored")
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    def _take_batch(self) -> list[AuditRow]:
        batch: list[AuditRow] = []
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _drain(self) -> None:
        """Write what is queued; the first batch waits ``linger_s`` so the records
        of the requests of that moment share one write."""
        if self._linger_s > 0:
            await asyncio.sleep(self._linger_s)
        while batch := self._take_batch():
            await self._write(batch)

    async def _write(self, batch: list[AuditRow]) -> None:
        written, dropped = audit_metrics()
        pool = self._pool_source()
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            if pool is None:
                break
            try:
                async with pool.acquire() as conn:
                    await insert_audit_rows(conn, batch)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("audit write failed (attempt %d): %s", attempt, type(exc).__name__)
                await asyncio.sleep(0.2 * attempt)
                continue
            written.inc(len(batch))
            return
        dropped.labels("write_failed").inc(len(batch))
        log.error("%d audit record(s) could not be stored", len(batch))

    async def flush(self) -> None:
        """Wait until every queued record is written (or counted as dropped)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        await self._drain()

    async def aclose(self) -> None:
        """Flush on shutdown."""
        await self.flush()
