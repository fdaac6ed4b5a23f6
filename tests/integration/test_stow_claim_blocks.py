"""A multipart request takes its claims in blocks, and gives back the ones it did not use.

A request with a Content-Length claims the instances it holds in one round trip,
counted from the size the first instance's header foretells (the end of its Pixel
Data); when the header cannot tell (encapsulated pixel data), the first instance
is claimed alone and the rest counted from its size. Without a length the blocks
double. Whatever the request's fate, no ``creating`` row outlives it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from skypacs.index import instances as index_instances
from skypacs.index.instances import Claim
from tests.integration.stow_helpers import (
    Stow,
    chunked,
    ct_small,
    make_settings,
    multipart,
    open_stow,
    part10,
    referenced_uids,
    related,
    storage_for,
)

pytestmark = pytest.mark.integration

STUDY = "1.2.826.0.1.3680043.10.77"
SERIES = f"{STUDY}.1"


@pytest.fixture
async def stow(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> AsyncIterator[Stow]:
    settings = make_settings(pg_dsn, tmp_path, storage_for(request, "filesystem"))
    async with open_stow(settings) as opened:
        yield opened


def _same_size_instances(count: int, template: str = "CT_small.dcm") -> list[bytes]:
    """``count`` instances of one series whose files are all the same size."""
    files = []
    for number in range(count):
        ds = ct_small() if template == "CT_small.dcm" else dcmread(get_testdata_file(template))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
        ds.SOPInstanceUID = f"{SERIES}.{number + 100}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        files.append(part10(ds))
    assert len({len(data) for data in files}) == 1
    return files


@pytest.fixture
def blocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every block of claims taken, in order (the real claims are taken)."""
    sizes: list[int] = []
    real = index_instances.claim

    async def counting(conn: asyncpg.Connection, count: int = 1) -> list[Claim]:
        sizes.append(count)
        return await real(conn, count)

    monkeypatch.setattr(index_instances, "claim", counting)
    return sizes


async def _versions_taken(pool: asyncpg.Pool) -> int:
    row = await pool.fetchrow("SELECT last_value, is_called FROM instance_version_seq")
    assert row is not None
    return int(row["last_value"]) if row["is_called"] else 0


async def test_a_sized_request_claims_exactly_its_instances(stow: Stow, blocks: list[int]) -> None:
    files = _same_size_instances(10)
    response = await stow.post_instances(files)
    assert response.status_code == 200
    assert len(referenced_uids(response)) == 10
    assert blocks == [10]
    assert await _versions_taken(stow.runtime.index.pool) == 10
    assert await stow.row_counts() == {"stored": 10}


async def test_without_a_foretold_size_the_first_instance_is_claimed_alone(
    stow: Stow, blocks: list[int]
) -> None:
    files = _same_size_instances(6, "JPEG2000.dcm")  # encapsulated: no length ahead
    response = await stow.post_instances(files)
    assert response.status_code == 200
    assert len(referenced_uids(response)) == 6
    assert blocks == [1, 5]
    assert await _versions_taken(stow.runtime.index.pool) == 6


async def test_a_single_instance_takes_a_single_claim(stow: Stow, blocks: list[int]) -> None:
    response = await stow.post_instances(_same_size_instances(1))
    assert response.status_code == 200
    assert blocks == [1]
    assert await _versions_taken(stow.runtime.index.pool) == 1


async def test_stored_claims_carry_the_identity_of_their_instance(stow: Stow) -> None:
    response = await stow.post_instances(_same_size_instances(3))
    assert response.status_code == 200
    rows = await stow.runtime.index.pool.fetch(
        "SELECT sop_instance_uid, study_uid, series_uid, sop_class_uid, transfer_syntax_uid "
        "FROM instances ORDER BY version"
    )
    assert [tuple(row.values()) for row in rows] == [
        (f"{SERIES}.{number}", STUDY, SERIES, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
        for number in (100, 101, 102)
    ]


async def test_a_chunked_request_gives_back_its_spare_claims(stow: Stow, blocks: list[int]) -> None:
    files = _same_size_instances(10)
    response = await stow.post(chunked(multipart(files)), related())
    assert response.status_code == 200
    assert len(referenced_uids(response)) == 10
    assert blocks == [1, 1, 2, 4, 8]
    assert await _versions_taken(stow.runtime.index.pool) == 16
    assert await stow.row_counts() == {"stored": 10}


async def test_a_request_refused_midway_leaves_no_claim(stow: Stow, blocks: list[int]) -> None:
    body = multipart(_same_size_instances(6), close=False)
    response = await stow.post(chunked(body), related())
    assert response.status_code == 400
    assert blocks == [1, 1, 2, 4]
    await stow.assert_nothing_stored()


async def test_a_stored_row_needs_its_identity(stow: Stow) -> None:
    pool = stow.runtime.index.pool
    validated = await pool.fetchval(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'instances_identity_known'"
    )
    assert validated is True
    assert (await stow.post_instances(_same_size_instances(1))).status_code == 200
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE instances SET sop_instance_uid = NULL WHERE status = 'stored'")
