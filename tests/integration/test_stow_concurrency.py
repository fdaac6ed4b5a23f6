"""Many clients uploading the same study at once (OHIF-style concurrent uploads).

Every upload must succeed, and the archive must end with exactly one stored
version and one ``instance.stored`` event per instance, consistent study
aggregates, and no blob left over from the losing uploads.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.integration.stow_helpers import (
    BACKENDS,
    Stow,
    as_stored,
    make_settings,
    open_stow,
    part10,
    referenced_uids,
    storage_for,
    synthesize_study,
)

pytestmark = pytest.mark.integration

CLIENTS = 20
INSTANCES = 50
STORED = "org.skypacs.instance.stored"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_twenty_clients_upload_the_same_study(
    backend: str, request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path
) -> None:
    study, instances = synthesize_study(INSTANCES)
    files = [part10(ds) for ds in instances]
    uids = [str(ds.SOPInstanceUID) for ds in instances]
    settings = make_settings(pg_dsn, tmp_path, storage_for(request, backend))
    async with open_stow(settings) as stow:
        responses: list[httpx.Response] = await asyncio.gather(
            *(stow.post_instances(files) for _ in range(CLIENTS))
        )
        assert [r.status_code for r in responses] == [200] * CLIENTS
        assert all(sorted(referenced_uids(r)) == sorted(uids) for r in responses)
        await _assert_one_copy_each(stow, study, uids, files)


async def _assert_one_copy_each(
    stow: Stow, study: str, uids: list[str], files: list[bytes]
) -> None:
    assert await stow.row_counts() == {"stored": INSTANCES}
    assert await stow.event_types() == [STORED] * INSTANCES
    pool = stow.runtime.index.pool
    stats = await pool.fetchrow(
        "SELECT num_instances, num_series FROM studies WHERE study_uid = $1", study
    )
    assert stats is not None
    assert (stats["num_instances"], stats["num_series"]) == (INSTANCES, 1)
    assert await pool.fetchval("SELECT num_instances FROM series") == INSTANCES
    assert len(await stow.blob_keys()) == INSTANCES
    for uid, data in zip(uids, files, strict=True):
        assert await stow.stored_blob(uid) == as_stored(data)


def _versions(count: int) -> tuple[str, list[bytes]]:
    """``count`` different Part 10 files under one SOP Instance UID."""
    _study, (template,) = synthesize_study(1)
    files = []
    for number in range(count):
        template.PatientName = f"Version^{number}"
        files.append(part10(template))
    return str(template.SOPInstanceUID), files


@pytest.mark.parametrize("policy", ["overwrite", "reject", "keep"])
async def test_concurrent_different_versions_leave_one(
    policy: str, pg_dsn: str, tmp_path: Path
) -> None:
    uid, files = _versions(8)
    settings = make_settings(pg_dsn, tmp_path, {"backend": "filesystem"}, duplicate_policy=policy)
    async with open_stow(settings) as stow:
        responses = await asyncio.gather(*(stow.post(data, "application/dicom") for data in files))
        codes = sorted(r.status_code for r in responses)
        served = await stow.stored_blob(uid)
        assert served in {as_stored(data) for data in files}
        assert await stow.row_counts() == {"stored": 1}
        assert len(await stow.blob_keys()) == 1
        events = await stow.event_types()
        if policy == "overwrite":
            assert codes == [200] * 8
            assert events == [STORED] + ["org.skypacs.instance.updated"] * 7
        elif policy == "reject":
            assert codes == [200] + [409] * 7
            assert events == [STORED]
            (winner,) = [d for d, r in zip(files, responses, strict=True) if r.status_code == 200]
            assert served == as_stored(winner)
        else:
            assert codes == [200] * 8
            assert events == [STORED]
