"""Retrieves from a real ``skypacs serve`` on filesystem blobs, sent with ``sendfile``."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from tests.fixtures.raw_http import content_length, read_response
from tests.fixtures.skypacs import ServerProcess
from tests.integration.stow_helpers import as_stored, ct_small, part10, with_new_uids

pytestmark = pytest.mark.integration

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: Frames of the large instance: 128x128 16-bit each, 16 MiB in all.
LARGE_FRAMES = 512


def _series() -> list[pydicom.Dataset]:
    """Three CT_small instances and a 16 MiB multi-frame one, in one new series."""
    study, series = generate_uid(), generate_uid()
    small = [with_new_uids(ct_small(), study=study, series=series) for _ in range(3)]
    large = with_new_uids(ct_small(), study=study, series=series)
    frame = large.pixel_array.astype(np.int16)
    stack = np.stack([np.roll(frame, shift, axis=1) for shift in range(LARGE_FRAMES)])
    large.NumberOfFrames = LARGE_FRAMES
    large.PixelData = stack.tobytes()
    return [*small, large]


@pytest.fixture(scope="module")
def stored(skypacs_server: ServerProcess) -> list[pydicom.Dataset]:
    datasets = _series()
    DICOMwebClient(url=skypacs_server.dicomweb).store_instances(datasets=datasets)
    return datasets


def _series_url(server: ServerProcess, ds: pydicom.Dataset) -> str:
    return f"{server.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"


def _parts(response: httpx.Response) -> list[bytes]:
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
    body = response.content
    assert body.endswith(f"--{boundary}--\r\n".encode())
    chunks = body.split(f"--{boundary}".encode())[1:-1]
    return [chunk.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n") for chunk in chunks]


def test_series_and_instance_come_back_byte_for_byte(
    skypacs_server: ServerProcess, stored: list[pydicom.Dataset]
) -> None:
    expected = sorted(as_stored(part10(ds)) for ds in stored)
    response = httpx.get(_series_url(skypacs_server, stored[0]), headers={"Accept": AS_STORED})
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    assert sorted(_parts(response)) == expected

    large = stored[-1]
    url = f"{_series_url(skypacs_server, large)}/instances/{large.SOPInstanceUID}"
    single = httpx.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert single.status_code == 200
    assert single.content == as_stored(part10(large))

    uri = httpx.get(
        f"{skypacs_server.dicomweb}/wado",
        params={
            "requestType": "WADO",
            "studyUID": large.StudyInstanceUID,
            "seriesUID": large.SeriesInstanceUID,
            "objectUID": large.SOPInstanceUID,
            "contentType": "application/dicom",
        },
    )
    assert uri.status_code == 200
    assert int(uri.headers["content-length"]) == len(uri.content)
    assert uri.content == as_stored(part10(large))


def test_dicomweb_client_reads_the_series(
    skypacs_server: ServerProcess, stored: list[pydicom.Dataset]
) -> None:
    client = DICOMwebClient(url=skypacs_server.dicomweb)
    first = stored[0]
    served = client.retrieve_series(first.StudyInstanceUID, first.SeriesInstanceUID)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in served}
    assert set(by_uid) == {str(ds.SOPInstanceUID) for ds in stored}
    for original in stored:
        pixels = by_uid[str(original.SOPInstanceUID)].pixel_array
        assert np.array_equal(pixels, original.pixel_array)


def _raw_get(url: str, accept: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect((parts.hostname or "", parts.port or 80))
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: {accept}\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def test_a_slow_reader_gets_every_byte(
    skypacs_server: ServerProcess, stored: list[pydicom.Dataset]
) -> None:
    large = stored[-1]
    url = f"{_series_url(skypacs_server, large)}/instances/{large.SOPInstanceUID}"
    with _raw_get(url, "application/dicom; transfer-syntax=*") as sock:
        head, body = read_response(sock, read_bytes=4096)
    assert content_length(head) == len(body)
    assert body == as_stored(part10(large))


def test_a_client_leaving_mid_body_leaves_the_server_well(
    skypacs_server: ServerProcess, stored: list[pydicom.Dataset]
) -> None:
    url = _series_url(skypacs_server, stored[0])
    log_start = skypacs_server.log_path.stat().st_size
    for _ in range(3):
        with _raw_get(url, AS_STORED) as sock:
            sock.recv(65536)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    response = httpx.get(url, headers={"Accept": AS_STORED})
    assert response.status_code == 200
    assert len(_parts(response)) == len(stored)
    with skypacs_server.log_path.open("rb") as log_file:
        log_file.seek(log_start)
        log = log_file.read().decode(errors="replace")
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log


FRAME_AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
#: Bytes of one frame of the large instance (128x128, 16 bits).
FRAME_BYTES = 128 * 128 * 2


def _instance_url(server: ServerProcess, ds: pydicom.Dataset) -> str:
    return f"{_series_url(server, ds)}/instances/{ds.SOPInstanceUID}"


def _sized(response: httpx.Response, status: int = 200) -> httpx.Response:
    """``response`` after checking its status and that it was sent with a length."""
    assert response.status_code == status, response.text
    assert int(response.headers["content-length"]) == len(response.content)
    return response


def test_a_frame_and_a_range_of_it_come_back_exact(
    skypacs_server: ServerProcess, stored: list[pydicom.Dataset]
) -> None:
    large = stored[-1]
    expected = large.PixelData[6 * FRAME_BYTES : 7 * FRAME_BYTES]
    url = f"{_instance_url(skypacs_server, large)}/frames/7"
    framed = _sized(httpx.get(url, headers={"Accept": FRAME_AS_STORED}))
    assert _parts(framed) == [expected]
    bare = httpx.get(url, headers={"Accept": "application/octet-stream; transfer-syntax=*"})
    assert _sized(bare).content == expected
    ranged = _sized(
        httpx.get(url, headers={"Accept": FRAME_AS_STORED, "Range": "bytes=1000-2999"}), 206
    )
    assert ranged.headers["content-range"] == f"bytes 1000-2999/{FRAME_BYTES}"
    assert _parts(ranged) == [expected[1000:3000]]


def test_bulk_pixel_data_and_a_compressed_frame_come_back_exact(
    skypacs_server: ServerProcess, stored: list[pydicom.Dataset]
) -> None:
    large = stored[-1]
    bulk = f"{_instance_url(skypacs_server, large)}/bulkdata/7FE00010"
    whole = _sized(httpx.get(bulk, headers={"Accept": "application/octet-stream"}))
    assert whole.content == large.PixelData

    path = get_testdata_file("SC_rgb_rle_2frame.dcm")
    assert isinstance(path, str)
    rle = with_new_uids(pydicom.dcmread(path))
    DICOMwebClient(url=skypacs_server.dicomweb).store_instances(datasets=[rle])
    fragments = [bytes(frame) for frame in generate_frames(rle.PixelData, number_of_frames=2)]
    url = f"{_instance_url(skypacs_server, rle)}/frames/2"
    framed = _sized(httpx.get(url, headers={"Accept": FRAME_AS_STORED}))
    assert _parts(framed) == [fragments[1]]
