"""Housekeeping after crashes and deletions.

Resolves what the two-phase store can leave behind when a process dies: claims
stuck in ``creating`` (their blob, if any, goes too), blobs that no row refers to,
and rows of deleted or replaced versions whose blobs still exist. Safe to run at
any time and from several replicas: every step is idempotent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from skypacs.index import Index, maintenance
from skypacs.storage import BlobInfo, BlobStore

log = logging.getLogger(__name__)

BLOB_PREFIX = "v1/"


@dataclass
class SweepReport:
    stale_claims: int = 0
    purged_rows: int = 0
    orphan_blobs: int = 0
    empty_containers: int = 0


async def _delete_rows_and_blobs(
    index: Index, blobs: BlobStore, rows: list[maintenance.BlobRow], statuses: tuple[str, ...]
) -> int:
    for row in rows:
        await blobs.delete(row.blob_key)
    async with index.pool.acquire() as conn:
        return await maintenance.forget(conn, [r.pk for r in rows], statuses=statuses)


async def _sweep_claims(index: Index, blobs: BlobStore, stale_after_s: float, batch: int) -> int:
    total = 0
    while True:
        async with index.pool.acquire() as conn:
            rows = await maintenance.stale_claims(conn, older_than_s=stale_after_s, limit=batch)
        if not rows:
            return total
        total += await _delete_rows_and_blobs(index, blobs, rows, ("creating",))
        if len(rows) < batch:
            return total


async def _purge_hidden(index: Index, blobs: BlobStore, batch: int) -> int:
    total = 0
    while True:
        async with index.pool.acquire() as conn:
            rows = await maintenance.purgeable(conn, limit=batch)
        if not rows:
            return total
        total += await _delete_rows_and_blobs(index, blobs, rows, ("deleted", "replaced"))
        if len(rows) < batch:
            return total


async def _remove_orphans(index: Index, blobs: BlobStore, batch: list[BlobInfo]) -> int:
    async with index.pool.acquire() as conn:
        known = await maintenance.known_blob_keys(conn, [b.key for b in batch])
    orphans = [b.key for b in batch if b.key not in known]
    for key in orphans:
        await blobs.delete(key)
    return len(orphans)


async def _sweep_orphans(index: Index, blobs: BlobStore, grace_s: float, batch_size: int) -> int:
    """Blobs without any row, older than the grace period (a claim always comes first)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    total, batch = 0, []
    async for info in blobs.list(BLOB_PREFIX):
        if info.modified is not None and info.modified > cutoff:
            continue
        batch.append(info)
        if len(batch) >= batch_size:
            total += await _remove_orphans(index, blobs, batch)
            batch = []
    if batch:
        total += await _remove_orphans(index, blobs, batch)
    return total


async def sweep(
    index: Index,
    blobs: BlobStore,
    *,
    stale_after_s: float,
    orphan_grace_s: float = 300.0,
    batch: int = 500,
) -> SweepReport:
    """One full pass; returns what it removed."""
    report = SweepReport()
    report.stale_claims = await _sweep_claims(index, blobs, stale_after_s, batch)
    report.purged_rows = await _purge_hidden(index, blobs, batch)
    report.orphan_blobs = await _sweep_orphans(index, blobs, orphan_grace_s, batch)
    async with index.pool.acquire() as conn:
        report.empty_containers = await maintenance.drop_empty_hierarchy(
            conn, idle_for_s=orphan_grace_s
        )
    log.info(
        "sweep done",
        extra={
            "stale_claims": report.stale_claims,
            "purged_rows": report.purged_rows,
            "orphan_blobs": report.orphan_blobs,
            "empty_containers": report.empty_containers,
        },
    )
    return report
