"""Malformed STOW-RS requests: the right 4xx or failure code, never a 500, nothing kept.

"Nothing kept" is what an operator would check after a refused upload: no
instance row of any status (neither ``stored`` nor ``creating``), no blob, no event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydicom.uid import UID, generate_uid

from tests.integration.stow_helpers import (
    BACKENDS,
    BOUNDARY,
    DICOM_JSON,
    STUDIES,
    Stow,
    chunked,
    ct_small,
    failures,
    make_settings,
    multipart,
    multipart_parts,
    open_stow,
    part10,
    related,
    storage_for,
    synthesize_study,
    with_new_uids,
)

pytestmark = pytest.mark.integration

CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH = 0xA900
SOP_CLASS_NOT_SUPPORTED = 0x0122
VERIFICATION_SOP_CLASS = UID("1.2.840.10008.1.1")

StowFactory = Callable[..., AbstractAsyncContextManager[Stow]]


@pytest.fixture(params=BACKENDS)
def stow_with(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> StowFactory:
    """Open the STOW app on this test's backend with the given STOW settings."""
    storage = storage_for(request, request.param)

    def factory(**stow: Any) -> AbstractAsyncContextManager[Stow]:
        return open_stow(make_settings(pg_dsn, tmp_path, storage, **stow))

    return factory


@pytest.fixture
async def stow(stow_with: StowFactory) -> AsyncIterator[Stow]:
    async with stow_with() as opened:
        yield opened


def _ct() -> bytes:
    return part10(with_new_uids(ct_small()))


def _bad_vr() -> bytes:
    """A Part 10 file whose Patient's Name element carries an invalid VR."""
    data = _ct()
    element = b"\x10\x00\x10\x00PN"
    assert data.count(element) == 1
    return data.replace(element, b"\x10\x00\x10\x00\x01\x02")


async def _refused(stow: Stow, response_status: int, status: int) -> None:
    assert response_status == status
    await stow.assert_nothing_stored()


async def test_truncated_body_without_close_delimiter(stow: Stow) -> None:
    response = await stow.post(multipart([_ct()], close=False), related())
    assert response.status_code == 400
    await stow.assert_nothing_stored()


async def test_body_cut_inside_a_part(stow: Stow) -> None:
    body = multipart([_ct()])
    response = await stow.post(body[: len(body) // 2], related())
    assert response.status_code == 400
    await stow.assert_nothing_stored()


async def test_truncated_body_after_complete_parts_keeps_nothing(stow: Stow) -> None:
    _study, instances = synthesize_study(3)
    body = multipart([part10(ds) for ds in instances], close=False)
    response = await stow.post(chunked(body), related())
    assert response.status_code == 400
    await stow.assert_nothing_stored()


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("missing-meta", lambda: _ct()[132:]),
        ("bad-vr", _bad_vr),
        ("garbage", lambda: bytes(range(256)) * 64),
        ("truncated-instance", lambda: _ct()[:20_000]),
    ],
)
async def test_unreadable_part_fails_with_0xC000(
    stow: Stow, name: str, payload: Callable[[], bytes]
) -> None:
    response = await stow.post_instances([payload()])
    assert response.status_code == 409, name
    assert response.headers["content-type"] == DICOM_JSON
    assert failures(response) == [CANNOT_UNDERSTAND]
    await stow.assert_nothing_stored()


async def test_single_dicom_body_without_meta_fails_with_0xC000(stow: Stow) -> None:
    response = await stow.post(_ct()[132:], "application/dicom")
    assert response.status_code == 409
    assert failures(response) == [CANNOT_UNDERSTAND]
    await stow.assert_nothing_stored()


async def test_instance_of_another_study_fails_with_0xA900(stow: Stow) -> None:
    response = await stow.post_instances([_ct()], path=f"{STUDIES}/{generate_uid()}")
    assert response.status_code == 409
    assert failures(response) == [DOES_NOT_MATCH]
    await stow.assert_nothing_stored()


async def test_non_storage_sop_class_fails_with_0x0122(stow: Stow) -> None:
    ds = with_new_uids(ct_small())
    ds.SOPClassUID = VERIFICATION_SOP_CLASS
    ds.file_meta.MediaStorageSOPClassUID = VERIFICATION_SOP_CLASS
    response = await stow.post_instances([part10(ds)])
    assert response.status_code == 409
    assert failures(response) == [SOP_CLASS_NOT_SUPPORTED]
    await stow.assert_nothing_stored()


async def test_multipart_without_boundary_is_400(stow: Stow) -> None:
    response = await stow.post(multipart([_ct()]), 'multipart/related; type="application/dicom"')
    await _refused(stow, response.status_code, 400)


async def test_text_plain_is_415(stow: Stow) -> None:
    response = await stow.post(_ct(), "text/plain")
    await _refused(stow, response.status_code, 415)


async def test_missing_content_type_is_415(stow: Stow) -> None:
    response = await stow.client.post(STUDIES, content=_ct())
    await _refused(stow, response.status_code, 415)


async def test_empty_multipart_is_400(stow: Stow) -> None:
    response = await stow.post(f"--{BOUNDARY}--\r\n".encode(), related())
    await _refused(stow, response.status_code, 400)


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "chunked"])
async def test_oversize_body_is_413(stow_with: StowFactory, send_length: bool) -> None:
    _study, instances = synthesize_study(2)
    body = multipart([part10(ds) for ds in instances])
    async with stow_with(max_body_bytes=50_000) as stow:
        response = await stow.post(body if send_length else chunked(body), related())
        await _refused(stow, response.status_code, 413)


async def test_oversize_single_instance_is_413(stow_with: StowFactory) -> None:
    async with stow_with(max_body_bytes=4096) as stow:
        response = await stow.post(chunked(_ct()), "application/dicom")
        await _refused(stow, response.status_code, 413)


async def test_too_many_parts_is_413(stow_with: StowFactory) -> None:
    _study, instances = synthesize_study(3)
    async with stow_with(max_parts=2) as stow:
        response = await stow.post_instances([part10(ds) for ds in instances])
        await _refused(stow, response.status_code, 413)


async def test_huge_part_header_is_413(stow_with: StowFactory) -> None:
    headers = {"Content-Type": "application/dicom", "X-Padding": "x" * 4096}
    async with stow_with(max_part_header_bytes=1024) as stow:
        response = await stow.post(multipart_parts([(headers, _ct())]), related())
        await _refused(stow, response.status_code, 413)


async def test_invalid_study_uid_in_the_path_is_400(stow: Stow) -> None:
    response = await stow.post_instances([_ct()], path=f"{STUDIES}/1.2.abc")
    await _refused(stow, response.status_code, 400)


async def test_one_bad_part_among_good_ones_is_202(stow: Stow) -> None:
    good = with_new_uids(ct_small())
    body = multipart_parts(
        [
            ({"Content-Type": "application/dicom"}, part10(good)),
            ({"Content-Type": "text/plain"}, b"not an instance"),
            ({"Content-Type": "application/dicom"}, bytes(range(256)) * 4),
        ]
    )
    response = await stow.post(body, related())
    assert response.status_code == 202
    assert failures(response) == [CANNOT_UNDERSTAND, CANNOT_UNDERSTAND]
    assert await stow.row_counts() == {"stored": 1}
    assert len(await stow.blob_keys()) == 1


async def test_metadata_part_that_is_not_json_is_400(stow: Stow) -> None:
    body = multipart_parts([({"Content-Type": DICOM_JSON}, b"[{not json")])
    response = await stow.post(body, related(inner=DICOM_JSON))
    await _refused(stow, response.status_code, 400)


async def test_bulk_data_uri_naming_no_part_fails_with_0xC000(stow: Stow) -> None:
    ds = with_new_uids(ct_small())
    metadata = ds.to_json_dict(
        bulk_data_threshold=16384, bulk_data_element_handler=lambda _e: "http://x/missing"
    )
    body = multipart_parts([({"Content-Type": DICOM_JSON}, orjson.dumps([metadata]))])
    response = await stow.post(body, related(inner=DICOM_JSON))
    assert response.status_code == 409
    assert failures(response) == [CANNOT_UNDERSTAND]
    await stow.assert_nothing_stored()
