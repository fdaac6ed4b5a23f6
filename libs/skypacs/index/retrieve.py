"""Read side of WADO-RS: which stored instances a request names, and their metadata.

Every query addresses a study, a series of a study, or one instance of a series
(PS3.18 §10.4.1) and sees only ``stored`` rows. Study and series levels go
through the unique UID columns of ``studies``/``series`` to the partial indexes
on ``instances``; metadata of a whole series comes back in one query, as the
JSON text the index holds (no decode and re-encode on the way out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import asyncpg

if TYPE_CHECKING:
    from .outbox import Executor


@dataclass(frozen=True, slots=True)
class Target:
    """The resource a request names: a study, a series of it, or one instance."""

    study_uid: str
    series_uid: str | None = None
    sop_instance_uid: str | None = None

    @property
    def level(self) -> str:
        if self.sop_instance_uid is not None:
            return "instance"
        return "series" if self.series_uid is not None else "study"

    def args(self) -> tuple[str, ...]:
        """Query arguments matching :func:`where_clause` for this level."""
        uids = (self.study_uid, self.series_uid, self.sop_instance_uid)
        return tuple(uid for uid in uids if uid is not None)


_STUDY_PK: Final = "(SELECT id FROM studies WHERE study_uid = $1)"
_SERIES_PK: Final = f"(SELECT id FROM series WHERE series_uid = $2 AND study_pk = {_STUDY_PK})"
_WHERE: Final = {
    "study": f"i.study_pk = {_STUDY_PK}",
    "series": f"i.series_pk = {_SERIES_PK}",
    "instance": "i.sop_instance_uid = $3 AND i.series_uid = $2 AND i.study_uid = $1",
}
#: Order of parts and metadata items: series, then instance number, then arrival.
ORDER_BY: Final = "i.series_pk, i.instance_number NULLS LAST, i.id"


def where_clause(target: Target, alias: str = "i") -> str:
    """SQL condition selecting the ``stored`` rows of ``target`` (arguments: ``target.args()``)."""
    condition = _WHERE[target.level].replace("i.", f"{alias}.")
    return f"{condition} AND {alias}.status = 'stored'"


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What retrieve needs about one stored instance (its metadata excluded)."""

    pk: int
    version: int
    study_pk: int
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size_bytes: int
    number_of_frames: int | None
    frame_ranges: list[list[tuple[int, int]]] | None
    bulk_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Image Pixel attributes (group 0028) as DICOM JSON; filled for single instances.
    pixel_attrs: dict[str, Any] = field(default_factory=dict)
    #: Whether the instance has Pixel Data (or Float/Double Float Pixel Data).
    has_pixels: bool = False


_COLUMNS: Final = """i.id, i.version, i.study_pk, i.study_uid, i.series_uid, i.sop_instance_uid,
i.sop_class_uid, i.transfer_syntax_uid, i.blob_key, i.size_bytes, i.number_of_frames,
i.frame_ranges, i.bulk_ranges,
(i.metadata ?| array['7FE00010', '7FE00008', '7FE00009']) AS has_pixels"""

_PIXEL_ATTRS: Final = """(SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb)
 FROM jsonb_each(i.metadata) WHERE key LIKE '0028%') AS pixel_attrs"""


def _ranges(raw: Any) -> list[list[tuple[int, int]]] | None:
    if raw is None:
        return None
    return [[(int(offset), int(length)) for offset, length in frame] for frame in raw]


def _instance(row: asyncpg.Record) -> StoredInstance:
    bulk = row["bulk_ranges"] or {}
    return StoredInstance(
        pk=int(row["id"]),
        version=int(row["version"]),
        study_pk=int(row["study_pk"]),
        study_uid=str(row["study_uid"]),
        series_uid=str(row["series_uid"]),
        sop_instance_uid=str(row["sop_instance_uid"]),
        sop_class_uid=str(row["sop_class_uid"]),
        transfer_syntax_uid=str(row["transfer_syntax_uid"]),
        blob_key=str(row["blob_key"]),
        size_bytes=int(row["size_bytes"] or 0),
        number_of_frames=row["number_of_frames"],
        frame_ranges=_ranges(row["frame_ranges"]),
        bulk_ranges={str(k): (int(v[0]), int(v[1])) for k, v in bulk.items()},
        pixel_attrs=dict(row["pixel_attrs"]) if "pixel_attrs" in row else {},
        has_pixels=bool(row["has_pixels"]),
    )


async def find_instances(executor: Executor, target: Target) -> list[StoredInstance]:
    """The stored instances of ``target`` in retrieve order (empty when unknown)."""
    sql = f"SELECT {_COLUMNS} FROM instances i WHERE {where_clause(target)} ORDER BY {ORDER_BY}"
    rows = await executor.fetch(sql, *target.args())
    return [_instance(row) for row in rows]


async def find_instance(
    executor: Executor, study_uid: str, series_uid: str, sop_instance_uid: str
) -> StoredInstance | None:
    """One stored instance with its Image Pixel attributes, or None."""
    target = Target(study_uid, series_uid, sop_instance_uid)
    sql = f"SELECT {_COLUMNS}, {_PIXEL_ATTRS} FROM instances i WHERE {where_clause(target)}"
    row = await executor.fetchrow(sql, *target.args())
    return None if row is None else _instance(row)


@dataclass(frozen=True, slots=True)
class InstanceBlob:
    """Where one stored instance's Part 10 bytes are: what a whole-object retrieve needs."""

    study_pk: int
    transfer_syntax_uid: str
    blob_key: str
    size_bytes: int


async def find_blobs(executor: Executor, target: Target) -> list[InstanceBlob]:
    """The blobs of the stored instances of ``target`` in retrieve order (empty when
    unknown); reads no JSON column, so a large series costs one light query."""
    sql = f"""SELECT i.study_pk, i.transfer_syntax_uid, i.blob_key, i.size_bytes
              FROM instances i WHERE {where_clause(target)} ORDER BY {ORDER_BY}"""
    rows = await executor.fetch(sql, *target.args())
    return [
        InstanceBlob(
            study_pk=int(r["study_pk"]),
            transfer_syntax_uid=str(r["transfer_syntax_uid"]),
            blob_key=str(r["blob_key"]),
            size_bytes=int(r["size_bytes"] or 0),
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class MetadataItem:
    """One instance's DICOM JSON as stored (relative BulkDataURIs) and its identity."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    version: int
    json_text: str


async def find_metadata(executor: Executor, target: Target) -> list[MetadataItem]:
    """DICOM JSON text of every stored instance of ``target``, in one query."""
    sql = f"""SELECT i.study_uid, i.series_uid, i.sop_instance_uid, i.version,
                     i.metadata::text AS json_text
              FROM instances i WHERE {where_clause(target)} ORDER BY {ORDER_BY}"""
    rows = await executor.fetch(sql, *target.args())
    return [
        MetadataItem(
            study_uid=str(r["study_uid"]),
            series_uid=str(r["series_uid"]),
            sop_instance_uid=str(r["sop_instance_uid"]),
            version=int(r["version"]),
            json_text=str(r["json_text"]),
        )
        for r in rows
    ]


async def version_list(executor: Executor, target: Target) -> list[int]:
    """Versions of the stored instances of ``target`` (cheap input for an ETag)."""
    sql = f"SELECT i.version FROM instances i WHERE {where_clause(target)} ORDER BY i.version"
    rows = await executor.fetch(sql, *target.args())
    return [int(r["version"]) for r in rows]


async def touch_studies(executor: Executor, study_pks: Sequence[int]) -> None:
    """Record an access to each study now (one statement for the whole batch)."""
    if study_pks:
        await executor.execute(
            "UPDATE studies SET last_access_at = now() WHERE id = ANY($1::bigint[])",
            sorted(set(study_pks)),
        )
