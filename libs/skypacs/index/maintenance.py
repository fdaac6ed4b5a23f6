"""Index side of housekeeping: stale claims, purgeable rows, orphan blob checks."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from .pool import Connection


@dataclass(frozen=True)
class BlobRow:
    pk: int
    blob_key: str


async def stale_claims(conn: Connection, *, older_than_s: float, limit: int) -> list[BlobRow]:
    """``creating`` rows older than the threshold: uploads that never finished."""
    rows = await conn.fetch(
        """SELECT id, blob_key FROM instances
           WHERE status = 'creating' AND created_at < now() - make_interval(secs => $1)
           ORDER BY created_at LIMIT $2""",
        older_than_s,
        limit,
    )
    return [BlobRow(int(r["id"]), str(r["blob_key"])) for r in rows]


async def purgeable(conn: Connection, *, limit: int) -> list[BlobRow]:
    """Rows hidden from queries (deleted or replaced) whose blob still exists."""
    rows = await conn.fetch(
        """SELECT id, blob_key FROM instances WHERE status IN ('deleted', 'replaced')
           ORDER BY updated_at LIMIT $1""",
        limit,
    )
    return [BlobRow(int(r["id"]), str(r["blob_key"])) for r in rows]


async def forget(conn: Connection, pks: Sequence[int], *, statuses: Sequence[str]) -> int:
    """Delete rows (after their blobs are gone) if still in one of ``statuses``."""
    result = await conn.execute(
        "DELETE FROM instances WHERE id = ANY($1::bigint[]) AND status = ANY($2::text[])",
        list(pks),
        list(statuses),
    )
    return int(result.split()[-1])


async def known_blob_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """The subset of ``keys`` that some instance row (any status) still refers to."""
    rows = await conn.fetch(
        "SELECT blob_key FROM instances WHERE blob_key = ANY($1::text[])", list(keys)
    )
    return {str(r["blob_key"]) for r in rows}


async def drop_empty_hierarchy(conn: Connection, *, idle_for_s: float) -> int:
    """Remove series and studies without instances, then patients without studies.

    Only rows untouched for ``idle_for_s`` go: every instance commit bumps the
    ``updated_at`` of its series and study under a row lock, and that condition is
    re-checked after a lock wait, so a concurrent store is never cascaded away.
    """
    series = await conn.execute(
        """DELETE FROM series s
           WHERE s.updated_at < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.series_pk = s.id)""",
        idle_for_s,
    )
    studies = await conn.execute(
        """DELETE FROM studies st
           WHERE st.updated_at < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM series s WHERE s.study_pk = st.id)
             AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.study_pk = st.id)""",
        idle_for_s,
    )
    with contextlib.suppress(asyncpg.ForeignKeyViolationError):  # a study arrived meanwhile
        await conn.execute(
            """DELETE FROM patients p
           WHERE p.updated_at < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM studies st WHERE st.patient_pk = p.id)""",
            idle_for_s,
        )
    return int(series.split()[-1]) + int(studies.split()[-1])
