"""Study and series aggregates (counts, sizes, modalities, SOP classes).

Kept current in the transaction of every instance write: incrementally for a new
instance, recomputed from the stored rows after replacements and deletions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .hierarchy import Ids
    from .pool import Connection


class _Added(Protocol):
    @property
    def size_bytes(self) -> int: ...
    @property
    def sop_class_uid(self) -> str: ...


# Counts the instances just stored in one series into it and its study. The
# series row is updated first: its new count tells whether they are the series'
# first (num_series), and it gives the modality. SOP classes ($5, in arrival
# order) not yet listed on the study are appended in that order.
_ADD_INSTANCES = """
WITH counted_series AS (
    UPDATE series SET num_instances = num_instances + $3,
        total_bytes = total_bytes + $4, updated_at = now()
    WHERE id = $2
    RETURNING num_instances, modality::text AS modality
)
UPDATE studies SET
    num_instances = studies.num_instances + $3,
    num_series = studies.num_series + CASE WHEN s.num_instances = $3 THEN 1 ELSE 0 END,
    total_bytes = studies.total_bytes + $4,
    modalities = CASE WHEN s.modality IS NULL OR s.modality = ANY (studies.modalities)
                      THEN studies.modalities
                      ELSE array_append(studies.modalities, s.modality) END,
    sop_classes = studies.sop_classes || ARRAY(
        SELECT c FROM unnest($5::text[]) WITH ORDINALITY AS added (c, position)
        WHERE c <> ALL (studies.sop_classes) ORDER BY position),
    updated_at = now()
FROM counted_series s
WHERE studies.id = $1
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
    await add_instances(conn, [(ids, added)])


async def add_instances(conn: Connection, added: Sequence[tuple[Ids, _Added]]) -> None:
    """Count newly stored instances into their series and studies.

    One statement per series, in the order the series first appear: a request
    of one series updates its study row once rather than once per instance.
    """
    per_series: dict[tuple[int, int], list[_Added]] = {}
    for ids, item in added:
        per_series.setdefault((ids.series_pk, ids.study_pk), []).append(item)
    for (series_pk, study_pk), items in per_series.items():
        classes = list(dict.fromkeys(item.sop_class_uid for item in items))
        size = sum(item.size_bytes for item in items)
        await conn.execute(_ADD_INSTANCES, study_pk, series_pk, len(items), size, classes)


async def recompute(conn: Connection, series_pks: Iterable[int], study_pks: Iterable[int]) -> None:
    """Recount the given series and studies from their stored instances."""
    for pk in sorted(set(series_pks)):
        await conn.execute(_RECOMPUTE_SERIES, pk)
    for pk in sorted(set(study_pks)):
        await conn.execute(_RECOMPUTE_STUDY, pk)
