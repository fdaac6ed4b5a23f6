"""STOW-RS request shapes real clients send (PS3.18 §10.5.1), on both blob backends."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from skypacs.dicomweb.status import FailureReason
from tests.integration.stow_helpers import (
    BACKENDS,
    BOUNDARY,
    DICOM_JSON,
    RETRIEVE_URL,
    STUDIES,
    Stow,
    as_stored,
    chunked,
    ct_small,
    failures,
    make_settings,
    multipart,
    multipart_parts,
    open_stow,
    part10,
    referenced_uids,
    related,
    storage_for,
    synthesize_study,
    with_new_uids,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
async def stow(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> AsyncIterator[Stow]:
    settings = make_settings(pg_dsn, tmp_path, storage_for(request, request.param))
    async with open_stow(settings) as opened:
        yield opened


async def _assert_all_stored(stow: Stow, instances: list[Dataset], files: list[bytes]) -> None:
    for ds, data in zip(instances, files, strict=True):
        assert await stow.stored_blob(ds.SOPInstanceUID) == as_stored(data)
    assert await stow.row_counts() == {"stored": len(instances)}


@pytest.mark.parametrize("quoted", [True, False], ids=["quoted", "unquoted"])
async def test_multipart_with_quoted_or_unquoted_boundary(stow: Stow, quoted: bool) -> None:
    _study, instances = synthesize_study(3)
    files = [part10(ds) for ds in instances]
    response = await stow.post(multipart(files), related(quoted=quoted))
    assert response.status_code == 200
    assert response.headers["content-type"] == DICOM_JSON
    assert referenced_uids(response) == [ds.SOPInstanceUID for ds in instances]
    await _assert_all_stored(stow, instances, files)


async def test_leading_crlf_before_the_first_boundary(stow: Stow) -> None:
    _study, instances = synthesize_study(2)
    files = [part10(ds) for ds in instances]
    response = await stow.post(b"\r\n" + multipart(files), related())
    assert response.status_code == 200
    await _assert_all_stored(stow, instances, files)


async def test_chunked_body_without_content_length(stow: Stow) -> None:
    _study, instances = synthesize_study(4)
    files = [part10(ds) for ds in instances]
    request = stow.client.build_request(
        "POST",
        STUDIES,
        content=chunked(multipart(files)),
        headers={"Content-Type": related()},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await stow.client.send(request)
    assert response.status_code == 200
    assert referenced_uids(response) == [ds.SOPInstanceUID for ds in instances]
    await _assert_all_stored(stow, instances, files)


async def test_single_part_application_dicom(stow: Stow) -> None:
    ds = with_new_uids(ct_small())
    data = part10(ds)
    response = await stow.post(data, "application/dicom")
    assert response.status_code == 200
    assert response.headers["content-type"] == DICOM_JSON
    assert referenced_uids(response) == [ds.SOPInstanceUID]
    await _assert_all_stored(stow, [ds], [data])


async def test_post_to_the_matching_study(stow: Stow) -> None:
    study, instances = synthesize_study(2)
    files = [part10(ds) for ds in instances]
    response = await stow.post_instances(files, path=f"{STUDIES}/{study}")
    assert response.status_code == 200
    assert response.json()[RETRIEVE_URL]["Value"] == [
        f"http://testserver/dicom-web/studies/{study}"
    ]
    await _assert_all_stored(stow, instances, files)


def _metadata_and_bulk(ds: Dataset, location: str) -> tuple[list[dict[str, Any]], bytes]:
    """DICOM JSON of ``ds`` with PixelData as a BulkDataURI, and the pixel bytes."""

    def bulk_uri(element: pydicom.DataElement) -> str:
        assert element.tag == 0x7FE00010
        return location

    metadata = ds.to_json_dict(bulk_data_threshold=16384, bulk_data_element_handler=bulk_uri)
    return [metadata], bytes(ds.PixelData)


async def test_metadata_and_bulk_data_round_trip_the_pixels(stow: Stow) -> None:
    original = with_new_uids(ct_small())
    location = f"http://testserver/bulk/{original.SOPInstanceUID}/pixel"
    metadata, pixels = _metadata_and_bulk(original, location)
    body = multipart_parts(
        [
            ({"Content-Type": DICOM_JSON}, orjson.dumps(metadata)),
            (
                {"Content-Type": "application/octet-stream", "Content-Location": location},
                pixels,
            ),
        ]
    )
    response = await stow.post(body, related(BOUNDARY, inner=DICOM_JSON))
    assert response.status_code == 200, response.text
    assert referenced_uids(response) == [original.SOPInstanceUID]
    stored = await stow.stored_blob(original.SOPInstanceUID)
    assert stored is not None
    decoded = pydicom.dcmread(BytesIO(stored))
    assert decoded.SOPInstanceUID == original.SOPInstanceUID
    assert decoded.StudyInstanceUID == original.StudyInstanceUID
    assert np.array_equal(decoded.pixel_array, original.pixel_array)


async def test_compressed_bulk_data_part_keeps_its_transfer_syntax(stow: Stow) -> None:
    path = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")
    assert isinstance(path, str)
    original = with_new_uids(pydicom.dcmread(path))
    syntax = str(original.file_meta.TransferSyntaxUID)
    frame = next(generate_frames(original.PixelData, number_of_frames=1))
    location = f"http://testserver/bulk/{original.SOPInstanceUID}/frame"
    metadata = copy.deepcopy(original)
    del metadata.PixelData
    item = metadata.to_json_dict()
    item["7FE00010"] = {"vr": "OB", "BulkDataURI": location}
    body = multipart_parts(
        [
            ({"Content-Type": DICOM_JSON}, orjson.dumps([item])),
            (
                {
                    "Content-Type": f"image/jpeg; transfer-syntax={syntax}",
                    "Content-Location": location,
                },
                frame,
            ),
        ]
    )
    response = await stow.post(body, related(BOUNDARY, inner=DICOM_JSON))
    assert response.status_code == 200, response.text
    stored = await stow.stored_blob(original.SOPInstanceUID)
    assert stored is not None
    decoded = pydicom.dcmread(BytesIO(stored))
    assert decoded.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(decoded.pixel_array, original.pixel_array)


@pytest.mark.parametrize("study_exists", [True, False], ids=["study-stored", "study-new"])
async def test_a_later_instance_filed_under_another_studys_series_fails_alone(
    stow: Stow, study_exists: bool
) -> None:
    """The series is stored under study A; an instance names it under study B.

    Whether study B is stored already (found without writing) or would be new
    (created, then rolled back), the instance fails and leaves no row behind.
    """
    study_a, instances_a = synthesize_study(1)
    study_b, instances_b = synthesize_study(1)
    first = instances_a + (instances_b if study_exists else [])
    assert (await stow.post_instances([part10(ds) for ds in first])).status_code == 200
    series_a = instances_a[0].SeriesInstanceUID
    misfiled = with_new_uids(instances_a[0], study=study_b, series=series_a)

    response = await stow.post_instances([part10(misfiled)])

    assert response.status_code == 409
    assert failures(response) == [FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS]
    assert await stow.row_counts() == {"stored": len(first)}
    studies = await stow.runtime.index.pool.fetch("SELECT study_uid, num_instances FROM studies")
    expected = {(study_a, 1)} | ({(study_b, 1)} if study_exists else set())
    assert {(row["study_uid"], row["num_instances"]) for row in studies} == expected


async def test_one_request_spanning_studies_reports_each_instance(stow: Stow) -> None:
    """Parts of two studies interleaved, one filed under a series of the other study.

    The misfiled part fails alone; the others are stored, answered in request
    order, counted once in their study and series, and announced once each.
    """
    study_a, first_a = synthesize_study(2)
    study_b, first_b = synthesize_study(2)
    misfiled = with_new_uids(first_a[0], study=study_b, series=first_a[0].SeriesInstanceUID)
    instances = [first_a[0], first_b[0], misfiled, first_a[1], first_b[1]]
    response = await stow.post_instances([part10(ds) for ds in instances])

    assert response.status_code == 202
    good = [ds for ds in instances if ds is not misfiled]
    assert referenced_uids(response) == [str(ds.SOPInstanceUID) for ds in good]
    assert failures(response) == [FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS]
    assert await stow.row_counts() == {"stored": 4}
    assert await stow.event_types() == ["org.skypacs.instance.stored"] * 4
    rows = await stow.runtime.index.pool.fetch(
        "SELECT study_uid, num_instances, num_series FROM studies ORDER BY study_uid"
    )
    assert {(r["study_uid"], r["num_instances"], r["num_series"]) for r in rows} == {
        (study_a, 2, 1),
        (study_b, 2, 1),
    }
