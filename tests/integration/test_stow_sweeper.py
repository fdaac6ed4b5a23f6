"""The sweeper resolves what crashes leave behind, and only that.

The leftovers are made the way a crash makes them: a ``creating`` claim whose
blob was written but never committed, a blob whose claim never got a row, and
a ``replaced`` row whose blob the overwriting request died before removing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skypacs.index import instances as index_instances
from skypacs.index.instances import blob_key_for
from skypacs.ingest.sweeper import sweep
from tests.integration.stow_helpers import (
    BACKENDS,
    Stow,
    as_stored,
    chunked,
    make_settings,
    open_stow,
    part10,
    storage_for,
    synthesize_study,
)

pytestmark = pytest.mark.integration

ORPHAN_VERSION = 987_654_321


@pytest.fixture(params=BACKENDS)
async def stow(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> AsyncIterator[Stow]:
    settings = make_settings(pg_dsn, tmp_path, storage_for(request, request.param))
    async with open_stow(settings) as opened:
        yield opened


async def _leave_crash_debris(stow: Stow, study: str, files: list[bytes]) -> dict[str, str]:
    """A stale claim with its blob, an orphan blob, and a replaced row with its blob."""
    pool, blobs = stow.runtime.index.pool, stow.runtime.blobs
    async with pool.acquire() as conn:
        (claim,) = await index_instances.claim(conn)
    await blobs.put(claim.blob_key, chunked(files[0]))
    orphan = blob_key_for(ORPHAN_VERSION)
    await blobs.put(orphan, chunked(files[1]))
    replaced = await pool.fetchval(
        """UPDATE instances SET status = 'replaced'
           WHERE id = (SELECT min(id) FROM instances WHERE status = 'stored')
           RETURNING blob_key"""
    )
    return {"claim": claim.blob_key, "orphan": orphan, "replaced": str(replaced)}


async def test_sweep_removes_crash_debris_and_keeps_stored_instances(stow: Stow) -> None:
    study, instances = synthesize_study(3)
    files = [part10(ds) for ds in instances]
    assert (await stow.post_instances(files)).status_code == 200
    debris = await _leave_crash_debris(stow, study, files)
    assert set(debris.values()) <= set(await stow.blob_keys())

    report = await sweep(stow.runtime.index, stow.runtime.blobs, stale_after_s=0, orphan_grace_s=0)

    assert (report.stale_claims, report.purged_rows, report.orphan_blobs) == (1, 1, 1)
    assert await stow.row_counts() == {"stored": 2}
    remaining = set(await stow.blob_keys())
    assert len(remaining) == 2
    assert remaining.isdisjoint(debris.values())
    kept = 0
    for ds, data in zip(instances, files, strict=True):
        served = await stow.stored_blob(ds.SOPInstanceUID)
        if served is not None:
            assert served == as_stored(data)
            kept += 1
    assert kept == 2


async def test_sweep_spares_uploads_still_in_flight(stow: Stow) -> None:
    study, instances = synthesize_study(3)
    files = [part10(ds) for ds in instances]
    assert (await stow.post_instances(files)).status_code == 200
    debris = await _leave_crash_debris(stow, study, files)

    report = await sweep(
        stow.runtime.index, stow.runtime.blobs, stale_after_s=3600, orphan_grace_s=3600
    )

    assert (report.stale_claims, report.orphan_blobs) == (0, 0)
    assert await stow.row_counts() == {"stored": 2, "creating": 1}
    remaining = set(await stow.blob_keys())
    assert {debris["claim"], debris["orphan"]} <= remaining
    assert debris["replaced"] not in remaining


async def test_claim_keys_follow_blob_key_for(stow: Stow) -> None:
    """The claim builds its blob key in SQL; it must be the key blob_key_for gives."""
    async with stow.runtime.index.pool.acquire() as conn:
        claims = [*await index_instances.claim(conn), *await index_instances.claim(conn, 3)]
        # Across a group boundary too: the SQL must divide the version as Python does.
        group = index_instances.BLOB_KEY_GROUP
        last = await conn.fetchval("SELECT last_value FROM instance_version_seq")
        await conn.execute(
            "SELECT setval('instance_version_seq', $1)", (last // group + 2) * group - 2
        )
        claims += await index_instances.claim(conn, 4)
    assert len({claim.version for claim in claims}) == 8
    assert [claim.blob_key for claim in claims] == [blob_key_for(c.version) for c in claims]
    assert len({claim.blob_key.rsplit("/", 1)[0] for claim in claims[-4:]}) == 2
