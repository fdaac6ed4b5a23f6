"""WADO-RS frames, bulk data, metadata, Range and DELETE on real Postgres and S3."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.integration.stow_helpers import part10, with_new_uids
from tests.integration.wado_helpers import (
    Archive,
    open_archive,
    s3_archive_settings,
    split_multipart,
)

pytestmark = pytest.mark.integration

AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
RLE = "1.2.840.10008.1.2.5"


@pytest.fixture
async def archive(
    request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path
) -> AsyncIterator[Archive]:
    async with open_archive(s3_archive_settings(request, pg_dsn, tmp_path)) as opened:
        yield opened


def _testdata(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    assert isinstance(path, str)
    return with_new_uids(pydicom.dcmread(path))


def _instance(ds: pydicom.Dataset) -> str:
    return (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def _multiframe(frames: int, rows: int = 512, columns: int = 512) -> pydicom.Dataset:
    """A native 16-bit multi-frame instance whose frames differ."""
    ds = _testdata("CT_small.dcm")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    base = np.arange(rows * columns, dtype=np.uint16).reshape(rows, columns)
    pixels = np.stack([base + k for k in range(frames)])
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    return ds


async def test_frames_2_and_3_equal_the_slices(archive: Archive) -> None:
    original = _multiframe(4, 64, 64)
    await archive.store([part10(original)])
    response = await archive.get(_instance(original) + "/frames/2,3", Accept=AS_STORED)
    assert response.status_code == 200
    parts = split_multipart(response)
    shape = (int(original.Rows), int(original.Columns))
    for (content_type, body), expected in zip(parts, original.pixel_array[1:3], strict=True):
        assert "transfer-syntax=" in content_type
        assert np.array_equal(np.frombuffer(body, dtype="<u2").reshape(shape), expected)


async def test_compressed_frames_as_stored_decoded_and_transcoded(archive: Archive) -> None:
    original = _testdata("SC_rgb_rle_2frame.dcm")
    await archive.store([part10(original)])
    frames = _instance(original) + "/frames/2"
    as_stored = await archive.get(frames, Accept=AS_STORED)
    assert as_stored.status_code == 200, as_stored.text
    stored = split_multipart(as_stored)
    assert RLE in stored[0][0]
    native = await archive.get(frames, Accept="multipart/related; type=application/octet-stream")
    assert native.status_code == 200, native.text
    [(content_type, body)] = split_multipart(native)
    assert "transfer-syntax=1.2.840.10008.1.2.1" in content_type
    expected = original.pixel_array[1]
    assert np.array_equal(np.frombuffer(body, dtype=np.uint8).reshape(expected.shape), expected)
    jp2 = await archive.get(frames, Accept='multipart/related; type="image/jp2"')
    assert jp2.status_code == 200, jp2.text
    [(content_type, body)] = split_multipart(jp2)
    assert content_type.startswith("image/jp2")
    from pydicom.pixels.decoders.base import get_decoder

    decoded, _ = get_decoder("1.2.840.10008.1.2.4.90").as_array(
        encapsulate([body]), rows=int(original.Rows), columns=int(original.Columns),
        samples_per_pixel=3,
        bits_allocated=8, bits_stored=8, pixel_representation=0,
        photometric_interpretation="RGB", number_of_frames=1, planar_configuration=0,
    )  # fmt: skip
    assert np.array_equal(decoded, expected)


async def test_frame_errors(archive: Archive) -> None:
    original = _multiframe(4, 64, 64)
    await archive.store([part10(original)])
    base = _instance(original) + "/frames/"
    for bad in ("0", "1,,2", "a", "-1", "1;2"):
        assert (await archive.get(base + bad)).status_code == 400, bad
    assert (await archive.get(base + "999")).status_code == 400
    assert (await archive.get(base + "1", Accept="image/png")).status_code == 406
    unknown = f"/studies/1.2/series/3.4/instances/{generate_uid()}/frames/1"
    assert (await archive.get(unknown)).status_code == 404


async def test_range_on_frames_returns_exact_slices(archive: Archive) -> None:
    original = _multiframe(4, 64, 64)
    await archive.store([part10(original)])
    frame = _instance(original) + "/frames/2"
    whole = await archive.get(frame, Accept="application/octet-stream; transfer-syntax=*")
    assert whole.status_code == 200
    size = len(whole.content)
    part = await archive.get(
        frame, Accept="application/octet-stream; transfer-syntax=*", Range="bytes=100-1099"
    )
    assert part.status_code == 206
    assert part.content == whole.content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{size}"
    tail = await archive.get(frame, Accept=AS_STORED, Range="bytes=-10")
    assert tail.status_code == 206
    assert split_multipart(tail)[0][1] == whole.content[-10:]
    beyond = await archive.get(frame, Range=f"bytes={size + 5}-")
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"


async def test_metadata_bulk_data_uris_resolve_to_stored_values(archive: Archive) -> None:
    original = _multiframe(4, 64, 64)
    await archive.store([part10(original)])
    response = await archive.get(
        f"/studies/{original.StudyInstanceUID}/series/{original.SeriesInstanceUID}/metadata",
        **{"X-Forwarded-Host": "pacs.example.org", "X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    [item] = response.json()
    uri = item["7FE00010"]["BulkDataURI"]
    assert uri.startswith("https://pacs.example.org/dicom-web/studies/")
    path = uri.removeprefix("https://pacs.example.org/dicom-web")
    bulk = await archive.get(path, Accept="application/octet-stream")
    assert bulk.status_code == 200
    assert bulk.content == original.PixelData
    ranged = await archive.get(path, Range="bytes=0-15")
    assert ranged.status_code == 206
    assert split_multipart(ranged)[0][1] == original.PixelData[:16]


async def test_bulk_values_other_than_pixel_data(archive: Archive) -> None:
    original = _testdata("CT_small.dcm")
    original.add_new(0x00091010, "OB", bytes(range(256)) * 20)
    await archive.store([part10(original)])
    [item] = (await archive.get(_instance(original) + "/metadata")).json()
    uri = item["00091010"]["BulkDataURI"]
    path = uri.split("/dicom-web", 1)[1]
    response = await archive.get(path)
    assert response.status_code == 200
    assert split_multipart(response)[0][1] == bytes(range(256)) * 20


async def test_metadata_etag_gzip_and_xml(archive: Archive) -> None:
    original = _testdata("CT_small.dcm")
    await archive.store([part10(original)])
    path = _instance(original) + "/metadata"
    first = await archive.get(path, **{"Accept-Encoding": "gzip"})
    assert first.status_code == 200
    assert first.headers["content-encoding"] == "gzip"
    assert first.json()[0]["00080018"]["Value"] == [original.SOPInstanceUID]
    etag = first.headers["etag"]
    again = await archive.get(path, **{"If-None-Match": etag})
    assert again.status_code == 304
    plain = await archive.get(path, **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(gzip.compress(plain.content)) == plain.content
    xml = await archive.get(path, Accept='multipart/related; type="application/dicom+xml"')
    [(content_type, body)] = split_multipart(xml)
    assert content_type == "application/dicom+xml"
    assert original.SOPInstanceUID.encode() in body
    assert (await archive.get(path, Accept="image/png")).status_code == 406


async def test_delete_hides_at_once_and_emits_events(archive: Archive) -> None:
    first, second = _testdata("CT_small.dcm"), _testdata("CT_small.dcm")
    second.StudyInstanceUID, second.SeriesInstanceUID = (
        first.StudyInstanceUID,
        first.SeriesInstanceUID,
    )
    await archive.store([part10(first), part10(second)])
    deleted = await archive.wado.delete(f"/dicom-web{_instance(first)}")
    assert deleted.status_code == 204
    assert (await archive.get(_instance(first))).status_code == 404
    series = f"/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
    assert len((await archive.get(series + "/metadata")).json()) == 1
    pool = archive.runtime.index.pool
    count = await pool.fetchval(
        "SELECT num_instances FROM studies WHERE study_uid = $1", first.StudyInstanceUID
    )
    assert count == 1
    events = await pool.fetch("SELECT type, subject FROM outbox ORDER BY seq")
    assert [e["type"] for e in events].count("org.skypacs.instance.deleted") == 1
    study = await archive.wado.delete(f"/dicom-web/studies/{first.StudyInstanceUID}")
    assert study.status_code == 204
    assert (await archive.get(series + "/metadata")).status_code == 404
    assert (await archive.wado.delete(f"/dicom-web{_instance(first)}")).status_code == 404
    await archive.wado._transport.app.state.wado_state.drain()  # type: ignore[attr-defined]
    assert [info.key async for info in archive.runtime.blobs.list("v1/")] == []


async def test_one_frame_of_a_100_mb_object_reads_under_1_mb(archive: Archive) -> None:
    big = _multiframe(200)
    data = part10(big)
    assert len(data) > 100_000_000
    await archive.store([data])
    archive.blobs.bytes_read = 0
    response = await archive.get(_instance(big) + "/frames/150", Accept=AS_STORED)
    assert response.status_code == 200
    [(_, body)] = split_multipart(response)
    assert np.array_equal(np.frombuffer(body, dtype="<u2"), big.pixel_array[149].ravel())
    assert archive.blobs.bytes_read < 1_000_000
