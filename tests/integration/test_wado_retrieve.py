"""WADO-RS retrieve of instances on real Postgres and S3 (SeaweedFS).

Data goes in through the real STOW app; the WADO app answers in process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.integration.stow_helpers import as_stored, part10, synthesize_study, with_new_uids
from tests.integration.wado_helpers import (
    Archive,
    open_archive,
    s3_archive_settings,
    split_multipart,
)

pytestmark = pytest.mark.integration

EXPLICIT_LE = "1.2.840.10008.1.2.1"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: Ample for a flush that does not wait; a close that waited would take a day.
CLOSE_DEADLINE_S = 60.0


@pytest.fixture
async def archive(
    request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path
) -> AsyncIterator[Archive]:
    async with open_archive(s3_archive_settings(request, pg_dsn, tmp_path)) as opened:
        yield opened


def _testdata(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    assert isinstance(path, str)
    return pydicom.dcmread(path)


def _path(ds: pydicom.Dataset, level: str = "instance") -> str:
    path = f"/studies/{ds.StudyInstanceUID}"
    if level in ("series", "instance"):
        path += f"/series/{ds.SeriesInstanceUID}"
    if level == "instance":
        path += f"/instances/{ds.SOPInstanceUID}"
    return path


async def test_series_retrieve_as_stored_returns_the_stored_bytes(archive: Archive) -> None:
    _study, instances = synthesize_study(3)
    files = [part10(ds) for ds in instances]
    await archive.store(files)
    response = await archive.get(_path(instances[0], "series"), Accept=DICOM_ANY)
    assert response.status_code == 200
    parts = split_multipart(response)
    assert sorted(body for _, body in parts) == sorted(as_stored(f) for f in files)
    assert all("transfer-syntax=" in content_type for content_type, _ in parts)


@pytest.mark.parametrize(
    "name",
    ["SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm", "MR_small_bigendian.dcm"],
)
async def test_default_retrieve_decodes_to_explicit_le(archive: Archive, name: str) -> None:
    original = with_new_uids(_testdata(name))
    await archive.store([part10(original)])
    response = await archive.get(_path(original))
    assert response.status_code == 200
    [(content_type, body)] = split_multipart(response)
    assert f"transfer-syntax={EXPLICIT_LE}" in content_type
    served = pydicom.dcmread(BytesIO(body))
    assert served.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert served.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(served.pixel_array, original.pixel_array)


async def test_jpeg2000_lossless_transcoding_round_trips_pixels(archive: Archive) -> None:
    original = with_new_uids(_testdata("CT_small.dcm"))
    await archive.store([part10(original)])
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={J2K_LOSSLESS}'
    response = await archive.get(_path(original), Accept=accept)
    assert response.status_code == 200
    [(content_type, body)] = split_multipart(response)
    assert J2K_LOSSLESS in content_type
    served = pydicom.dcmread(BytesIO(body))
    assert served.file_meta.TransferSyntaxUID == J2K_LOSSLESS
    assert np.array_equal(served.pixel_array, original.pixel_array)


async def test_accept_forms_and_errors(archive: Archive) -> None:
    original = with_new_uids(_testdata("CT_small.dcm"))
    await archive.store([part10(original)])
    path = _path(original)
    unquoted = "multipart/related; type=application/dicom; transfer-syntax=*"
    several = f"image/png, {DICOM_ANY};q=0.5"
    for accept in (unquoted, several, "*/*"):
        assert (await archive.get(path, Accept=accept)).status_code == 200, accept
    query = await archive.wado.get(f"/dicom-web{path}", params={"accept": "application/dicom"})
    assert query.status_code == 200
    assert query.headers["content-type"].startswith("application/dicom")
    assert (await archive.get(path, Accept="image/png")).status_code == 406
    jpeg = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert (await archive.get(path, Accept=jpeg)).status_code == 406
    unknown = "/studies/1.2.3/series/4.5.6/instances/7.8.9"
    assert (await archive.get(unknown)).status_code == 404
    assert (await archive.get("/studies/1.2.3")).status_code == 404
    assert (await archive.get("/studies/1..2")).status_code == 400


async def test_study_access_time_is_recorded(archive: Archive) -> None:
    original = with_new_uids(_testdata("CT_small.dcm"))
    await archive.store([part10(original)])
    assert (await archive.get(_path(original, "study"))).status_code == 200
    state = archive_state(archive)
    await state.access.flush(archive.runtime)
    accessed = await archive.runtime.index.pool.fetchval(
        "SELECT last_access_at FROM studies WHERE study_uid = $1", original.StudyInstanceUID
    )
    assert accessed is not None


async def test_pending_access_times_are_written_when_the_app_stops(
    request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path
) -> None:
    settings = s3_archive_settings(request, pg_dsn, tmp_path)
    wado = settings.wado.model_copy(update={"access_flush_interval_s": 24 * 3600.0})
    original = with_new_uids(_testdata("CT_small.dcm"))
    async with open_archive(settings.model_copy(update={"wado": wado})) as archive:
        await archive.store([part10(original)])
        assert (await archive.get(_path(original, "study"))).status_code == 200
        # A day before the next flush: stopping writes the access at once.
        await asyncio.wait_for(archive_state(archive).close(), CLOSE_DEADLINE_S)
        accessed = await archive.runtime.index.pool.fetchval(
            "SELECT last_access_at FROM studies WHERE study_uid = $1", original.StudyInstanceUID
        )
    assert accessed is not None


def archive_state(archive: Archive) -> Any:
    transport = archive.wado._transport
    return transport.app.state.wado_state  # type: ignore[attr-defined]
