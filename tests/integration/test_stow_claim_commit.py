"""The ``creating`` claim commits asynchronously, and only the claim does.

A claim acknowledges nothing, so its commit need not wait for the WAL flush;
the later commit of the instance flushes it (see ``instances.claim``). These
tests pin that the setting is confined to the claim's own transaction, and
that a batch commit meeting a concurrent twin still answers exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest

from skypacs.index import aggregates
from skypacs.index import instances as index_instances
from skypacs.index.hierarchy import PatientFields, SeriesFields, StudyFields
from skypacs.index.instances import Claim, DuplicatePolicy, Outcome

pytestmark = pytest.mark.integration

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


async def _claim(conn: asyncpg.Connection) -> Claim:
    (claim,) = await index_instances.claim(conn)
    return claim


async def test_standalone_claim_statement_commits_asynchronously(pg_pool: asyncpg.Pool) -> None:
    """The statement itself switches synchronous_commit off for its transaction."""
    async with pg_pool.acquire() as conn, conn.transaction():
        # the SQL claim() runs outside a transaction
        await conn.fetch(index_instances._CLAIM_ALONE, 2)
        assert await conn.fetchval("SHOW synchronous_commit") == "off"


async def test_claim_leaves_the_session_setting_alone(pg_pool: asyncpg.Pool) -> None:
    async with pg_pool.acquire() as conn:
        before = await conn.fetchval("SHOW synchronous_commit")
        claim = await _claim(conn)
        assert await conn.fetchval("SHOW synchronous_commit") == before == "on"
    async with pg_pool.acquire() as other:
        row = await other.fetchrow("SELECT status, blob_key FROM instances WHERE id = $1", claim.pk)
    assert row is not None
    assert (row["status"], row["blob_key"]) == ("creating", claim.blob_key)


async def test_claim_inside_a_transaction_keeps_its_commit_synchronous(
    pg_pool: asyncpg.Pool,
) -> None:
    async with pg_pool.acquire() as conn:
        async with conn.transaction():
            claim = await _claim(conn)
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
        assert await conn.fetchval("SELECT count(*) FROM instances WHERE id = $1", claim.pk) == 1


def _record(sop_instance_uid: str, sha256: bytes, study: str) -> index_instances.InstanceRecord:
    series = f"{study}.1"
    return index_instances.InstanceRecord(
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=CT_IMAGE,
        study_uid=study,
        series_uid=series,
        transfer_syntax_uid=EXPLICIT_LE,
        patient=PatientFields(patient_id=study),
        study=StudyFields(study_uid=study),
        series=SeriesFields(series_uid=series, modality="CT"),
        instance_number=1,
        number_of_frames=None,
        size_bytes=100,
        sha256=sha256,
        pixel_data_offset=None,
        frame_ranges=None,
    )


async def test_batch_losing_a_concurrent_twin_is_reconciled(pg_pool: asyncpg.Pool) -> None:
    """A twin committed after the batch's snapshot: the batch still answers exactly.

    The first request holds its commit open until the second one's flip waits on
    the unique index, so the second batch meets a unique violation and is redone.
    The twin comes under another patient and study, so that only the unique index
    makes the second request wait.
    """
    study, elsewhere = "1.2.826.0.1.3680043.10.2", "1.2.826.0.1.3680043.10.3"
    twin_uid, other_uid = "1.2.826.0.1.3680043.10.2.1.1", "1.2.826.0.1.3680043.10.2.1.2"
    first, again, other = (
        _record(twin_uid, b"a" * 32, study),
        _record(twin_uid, b"a" * 32, elsewhere),
        _record(other_uid, b"b" * 32, elsewhere),
    )
    async with pg_pool.acquire() as winner, pg_pool.acquire() as loser:
        claims = await index_instances.claim(winner, 3)
        outer = winner.transaction()
        await outer.start()
        await index_instances.commit_many(
            winner, [(claims[0], first)], policy=DuplicatePolicy.REJECT, source="test"
        )
        batch = asyncio.ensure_future(
            index_instances.commit_many(
                loser,
                [(claims[1], again), (claims[2], other)],
                policy=DuplicatePolicy.REJECT,
                source="test",
            )
        )
        while not await _waits_for_a_lock(winner, loser.get_server_pid()):
            await asyncio.sleep(0.01)
        await outer.commit()
        results = await batch
        stored = await winner.fetch(
            "SELECT sop_instance_uid FROM instances WHERE status = 'stored' ORDER BY 1"
        )
        counts = await winner.fetch(
            "SELECT num_instances, total_bytes FROM series ORDER BY series_uid"
        )
    assert [r.outcome if r else None for r in results] == [Outcome.IDENTICAL, Outcome.STORED]
    assert [row["sop_instance_uid"] for row in stored] == [twin_uid, other_uid]
    assert [(row["num_instances"], row["total_bytes"]) for row in counts] == [(1, 100), (1, 100)]


async def _waits_for_a_lock(conn: asyncpg.Connection, pid: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
    )


MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
_AGGREGATES = """
SELECT st.num_instances, st.num_series, st.total_bytes, st.modalities, st.sop_classes,
       array_agg(se.num_instances ORDER BY se.series_uid) AS per_series
FROM studies st JOIN series se ON se.study_pk = st.id
WHERE st.study_uid = $1
GROUP BY st.id
"""


def _in_series(
    rec: index_instances.InstanceRecord, series: str, modality: str, sop_class: str, size: int
) -> index_instances.InstanceRecord:
    return dataclasses.replace(
        rec,
        sop_class_uid=sop_class,
        series_uid=series,
        series=SeriesFields(series_uid=series, modality=modality),
        size_bytes=size,
    )


async def test_batches_count_each_series_into_the_study_once(pg_pool: asyncpg.Pool) -> None:
    """Counts, sizes, modalities and SOP classes match a recount from the rows.

    The first batch spans two series (MR first, then CT); the second adds to
    the CT series. Modalities and SOP classes keep their order of arrival.
    """
    study = "1.2.826.0.1.3680043.10.4"
    base = _record(f"{study}.0", b"c" * 32, study)
    shapes = [
        (f"{study}.2", "MR", MR_IMAGE, 10),
        (f"{study}.3", "CT", CT_IMAGE, 20),
        (f"{study}.2", "MR", CT_IMAGE, 30),
        (f"{study}.3", "CT", CT_IMAGE, 40),
    ]
    records = [
        _in_series(dataclasses.replace(base, sop_instance_uid=f"{study}.9.{n}"), *shape)
        for n, shape in enumerate(shapes)
    ]
    async with pg_pool.acquire() as conn:
        claims = await index_instances.claim(conn, len(records))
        pairs = list(zip(claims, records, strict=True))
        for batch in (pairs[:3], pairs[3:]):
            results = await index_instances.commit_many(
                conn, batch, policy=DuplicatePolicy.REJECT, source="test"
            )
            assert [r.outcome if r else None for r in results] == [Outcome.STORED] * len(batch)
        counted = await conn.fetchrow(_AGGREGATES, study)
        pks = await conn.fetchrow(
            "SELECT st.id, array_agg(se.id) AS series FROM studies st "
            "JOIN series se ON se.study_pk = st.id WHERE st.study_uid = $1 GROUP BY st.id",
            study,
        )
        assert pks is not None
        await aggregates.recompute(conn, pks["series"], [pks["id"]])
        recounted = await conn.fetchrow(_AGGREGATES, study)
    assert counted is not None
    assert recounted is not None
    assert counted["modalities"] == ["MR", "CT"]
    assert counted["sop_classes"] == [MR_IMAGE, CT_IMAGE]
    assert (counted["num_instances"], counted["num_series"], counted["total_bytes"]) == (4, 2, 100)
    assert counted["per_series"] == [2, 2]
    for column in ("num_instances", "num_series", "total_bytes", "per_series"):
        assert counted[column] == recounted[column]
    for column in ("modalities", "sop_classes"):
        assert sorted(counted[column]) == sorted(recounted[column])
