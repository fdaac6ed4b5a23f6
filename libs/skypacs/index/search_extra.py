"""Administrator-defined query attributes: the tag list and its values (``skypacs reindex``).

``extra_query_tags`` lists the tags; a trigger on ``instances`` records their values
in ``extra_query_values`` whenever an instance becomes ``stored``. Changing the
list needs a reindex: :func:`reindex` makes the table match the settings, drops
values of removed tags and backfills stored instances in id batches, each in its
own short transaction, so ingest keeps running meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

DEFAULT_BATCH: int = 20_000

# One statement, one snapshot: the values of the range are replaced as a whole, so
# an instance stored concurrently is filled either by the trigger or here, not twice.
_BACKFILL = """
WITH gone AS (
    DELETE FROM extra_query_values WHERE instance_pk >= $1 AND instance_pk < $2)
INSERT INTO extra_query_values (instance_pk, series_pk, study_pk, tag, value)
SELECT i.id, i.series_pk, i.study_pk, t.tag, v.value
FROM instances i
CROSS JOIN unnest($3::text[]) AS t(tag)
CROSS JOIN LATERAL skypacs_json_values(i.metadata -> t.tag) AS v(value)
WHERE i.id >= $1 AND i.id < $2 AND i.status = 'stored'
"""


@dataclass(frozen=True)
class ReindexReport:
    tags: list[str]
    removed_tags: list[str]
    instances: int
    values: int


async def _sync_tags(pool: asyncpg.Pool, tags: Sequence[str]) -> list[str]:
    """Make ``extra_query_tags`` hold exactly ``tags``; return the tags removed."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "DELETE FROM extra_query_tags WHERE NOT (tag = ANY($1::text[])) RETURNING tag",
            list(tags),
        )
        removed = sorted(str(r["tag"]) for r in rows)
        await conn.execute(
            "INSERT INTO extra_query_tags (tag) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            list(tags),
        )
    return removed


async def reindex(
    pool: asyncpg.Pool, tags: Sequence[str], *, batch: int = DEFAULT_BATCH
) -> ReindexReport:
    """Re-extract the values of ``tags`` for every stored instance.

    The tag list is switched first, so instances stored while the backfill runs
    are filled by the trigger; each batch replaces its id range in one statement.
    """
    tag_list = sorted(set(tags))
    removed = await _sync_tags(pool, tag_list)
    await pool.execute("DELETE FROM extra_query_values WHERE NOT (tag = ANY($1::text[]))", tag_list)
    bounds = await pool.fetchrow("SELECT min(id) AS low, max(id) AS high FROM instances")
    instances = values = 0
    if tag_list and bounds is not None and bounds["low"] is not None:
        for start in range(int(bounds["low"]), int(bounds["high"]) + 1, batch):
            status = await pool.execute(_BACKFILL, start, start + batch, tag_list)
            values += int(status.rsplit(" ", 1)[-1])
        instances = int(
            await pool.fetchval("SELECT count(*) FROM instances WHERE status = 'stored'")
        )
    return ReindexReport(tag_list, removed, instances, values)
