"""DELETE of a study, series or instance: hidden at once, blobs removed afterwards.

One transaction flips every stored instance of the target to ``deleted``,
recomputes the aggregates of the series and studies they belonged to and
appends one ``instance.deleted`` event per instance to the outbox. The blobs are
removed after commit by the caller; rows left ``deleted`` with a blob (a crash in
between) are purged by the sweeper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skypacs.events.model import Event, EventType, new_event

from . import aggregates
from .outbox import append_many
from .retrieve import Target, where_clause

if TYPE_CHECKING:
    from .pool import Connection


@dataclass(frozen=True, slots=True)
class DeletedInstance:
    """One instance hidden by a delete, with the blob that is now garbage."""

    pk: int
    version: int
    study_pk: int
    series_pk: int
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    blob_key: str


_RETURNING = """RETURNING i.id, i.version, i.study_pk, i.series_pk, i.study_uid, i.series_uid,
    i.sop_instance_uid, i.sop_class_uid, i.blob_key"""


def _event(row: DeletedInstance, source: str) -> Event:
    return new_event(
        EventType.INSTANCE_DELETED,
        partition_key=row.study_uid,
        subject=(
            f"studies/{row.study_uid}/series/{row.series_uid}/instances/{row.sop_instance_uid}"
        ),
        source=source,
        data={
            "study_uid": row.study_uid,
            "series_uid": row.series_uid,
            "sop_instance_uid": row.sop_instance_uid,
            "sop_class_uid": row.sop_class_uid,
            "version": row.version,
        },
    )


async def delete_target(conn: Connection, target: Target, *, source: str) -> list[DeletedInstance]:
    """Hide every stored instance of ``target``; empty when there was none."""
    sql = f"""UPDATE instances i SET status = 'deleted', updated_at = now()
              WHERE {where_clause(target)} {_RETURNING}"""
    async with conn.transaction():
        rows = await conn.fetch(sql, *target.args())
        deleted = [
            DeletedInstance(
                pk=int(r["id"]),
                version=int(r["version"]),
                study_pk=int(r["study_pk"]),
                series_pk=int(r["series_pk"]),
                study_uid=str(r["study_uid"]),
                series_uid=str(r["series_uid"]),
                sop_instance_uid=str(r["sop_instance_uid"]),
                sop_class_uid=str(r["sop_class_uid"]),
                blob_key=str(r["blob_key"]),
            )
            for r in rows
        ]
        if deleted:
            await aggregates.recompute(
                conn, {d.series_pk for d in deleted}, {d.study_pk for d in deleted}
            )
            await append_many(conn, [_event(d, source) for d in deleted])
    return deleted


async def forget_deleted(conn: Connection, pks: Sequence[int]) -> int:
    """Drop ``deleted`` rows whose blobs are gone; the number dropped."""
    result = await conn.execute(
        "DELETE FROM instances WHERE id = ANY($1::bigint[]) AND status = 'deleted'", list(pks)
    )
    return int(result.split()[-1])
