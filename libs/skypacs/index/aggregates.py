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


_ADD_TO_SERIES = """
UPDATE series SET num_instances = num_instances + 1, total_bytes = total_bytes + $2,
    updated_at = now()
WHERE id = $1
RETURNING num_instances, modality
"""

_ADD_TO_STUDY = """
UPDATE studies SET
    num_instances = num_instances + 1,
    num_series = num_series + $3,
    total_bytes = total_bytes + $2,
    modalities = CASE WHEN $4::text IS NULL OR $4 = ANY (modalities) THEN modalities
                      ELSE array_append(modalities, $4::text) END,
    sop_classes = CASE WHEN $5 = ANY (sop_classes) THEN sop_classes
                       ELSE array_append(sop_classes, $5::text) END,
    updated_at = now()
WHERE id = $1
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
    row = await conn.fetchrow(_ADD_TO_SERIES, ids.series_pk, added.size_bytes)
    assert row is not None
    first_in_series = 1 if row["num_instances"] == 1 else 0
    await conn.execute(
        _ADD_TO_STUDY,
        ids.study_pk,
        added.size_bytes,
        first_in_series,
        row["modality"],
        added.sop_class_uid,
    )


async def recompute(conn: Connection, series_pks: Iterable[int], study_pks: Iterable[int]) -> None:
    """Recount the given series and studies from their stored instances."""
    for pk in sorted(set(series_pks)):
        await conn.execute(_RECOMPUTE_SERIES, pk)
    for pk in sorted(set(study_pks)):
        await conn.execute(_RECOMPUTE_STUDY, pk)
