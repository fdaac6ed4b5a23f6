"""Study and series aggregates (counts, sizes, modalities, SOP classes).

Kept current in the transaction of every instance write: incrementally for a new
instance, recomputed from the stored rows after replacements and deletions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .hierarchy import Ids
    from .pool import Connection


class _Added(Protocol):
    @property
    def size_bytes(self) -> int: ...
    @property
    def sop_class_uid(self) -> str: ...


def count_added(added: str, series_pk: str, study_pk: str) -> str:
    """CTEs counting the row of CTE ``added`` into its series and study.

    ``added`` yields ``size_bytes`` and ``sop_class_uid`` (at most one row: none
    counts nothing); ``series_pk`` and ``study_pk`` are the SQL parameters of the
    two keys. The series row counts the instance first and tells whether it is
    the series' first (num_series) and its modality. The text follows a
    ``WITH ...,`` list and leaves the main statement to the caller.
    """
    return f"""
counted_series AS (
    UPDATE series SET num_instances = num_instances + 1,
        total_bytes = total_bytes + {added}.size_bytes, updated_at = now()
    FROM {added}
    WHERE series.id = {series_pk}
    RETURNING series.num_instances, series.modality::text AS modality,
              {added}.size_bytes, {added}.sop_class_uid
),
counted_study AS (
    UPDATE studies SET
        num_instances = studies.num_instances + 1,
        num_series = studies.num_series + CASE WHEN s.num_instances = 1 THEN 1 ELSE 0 END,
        total_bytes = studies.total_bytes + s.size_bytes,
        modalities = CASE WHEN s.modality IS NULL OR s.modality = ANY (studies.modalities)
                          THEN studies.modalities
                          ELSE array_append(studies.modalities, s.modality) END,
        sop_classes = CASE WHEN s.sop_class_uid = ANY (studies.sop_classes)
                           THEN studies.sop_classes
                           ELSE array_append(studies.sop_classes, s.sop_class_uid) END,
        updated_at = now()
    FROM counted_series s
    WHERE studies.id = {study_pk}
    RETURNING studies.id
)"""


_ADD_INSTANCE = f"""
WITH added AS (SELECT $3::bigint AS size_bytes, $4::text AS sop_class_uid),
{count_added("added", "$2", "$1")}
SELECT count(*) FROM counted_study
"""

_RECOMPUTE_SERIES = """
UPDATE series s SET num_instances = c.n, total_bytes = c.bytes, updated_at = now()
FROM (SELECT count(*) AS n, coalesce(sum(size_bytes), 0) AS bytes
      FROM instances WHERE series_pk = $1 AND status = 'stored') c
WHERE s.id = $1
"""

_RECOMPUTE_STUDY = """
UPDATE studies st SET
    num_instances = c.n,
    num_series = c.series_count,
    total_bytes = c.bytes,
    modalities = c.modalities,
    sop_classes = c.sop_classes,
    updated_at = now()
FROM (
    SELECT count(*) AS n,
           count(DISTINCT i.series_pk) AS series_count,
           coalesce(sum(i.size_bytes), 0) AS bytes,
           coalesce(array_agg(DISTINCT se.modality) FILTER (WHERE se.modality IS NOT NULL),
                    '{}') AS modalities,
           coalesce(array_agg(DISTINCT i.sop_class_uid), '{}') AS sop_classes
    FROM instances i JOIN series se ON se.id = i.series_pk
    WHERE i.study_pk = $1 AND i.status = 'stored') c
WHERE st.id = $1
"""


async def add_instance(conn: Connection, ids: Ids, added: _Added) -> None:
    """Count one newly stored instance into its series and study."""
    await conn.execute(
        _ADD_INSTANCE, ids.study_pk, ids.series_pk, added.size_bytes, added.sop_class_uid
    )


async def recompute(conn: Connection, series_pks: Iterable[int], study_pks: Iterable[int]) -> None:
    """Recount the given series and studies from their stored instances."""
    for pk in sorted(set(series_pks)):
        await conn.execute(_RECOMPUTE_SERIES, pk)
    for pk in sorted(set(study_pks)):
        await conn.execute(_RECOMPUTE_STUDY, pk)
