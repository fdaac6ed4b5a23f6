"""Thumbnails, rendered images and WADO-URI from a real ``skypacs serve`` process.

Plain HTTP (httpx, as curl would) and the Python dicomweb-client's rendered calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from tests.fixtures.skypacs import ServerProcess, start_server
from tests.integration.stow_helpers import with_new_uids

pytestmark = pytest.mark.integration


@pytest.fixture
def server(pg_dsn: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = start_server(tmp_path / "var", env={"SKYPACS_INDEX__DSN": pg_dsn})
    try:
        yield process
    finally:
        process.stop()


def _dataset(name: str, **uids: str) -> Dataset:
    path = get_testdata_file(name)
    assert isinstance(path, str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return with_new_uids(pydicom.dcmread(path), **uids)


def _image(body: bytes) -> Image.Image:
    image = Image.open(BytesIO(body))
    image.load()
    return image


def _series_of(count: int) -> list[Dataset]:
    first = _dataset("CT_small.dcm")
    series = [first]
    for number in range(2, count + 1):
        ds = _dataset("CT_small.dcm", study=first.StudyInstanceUID, series=first.SeriesInstanceUID)
        ds.InstanceNumber = number
        series.append(ds)
    first.InstanceNumber = 1
    for ds in series:  # each instance looks different, so thumbnails can be told apart
        pixels = ds.pixel_array
        ds.PixelData = (pixels // int(ds.InstanceNumber)).astype(pixels.dtype).tobytes()
    return series


def _paths(ds: Dataset) -> tuple[str, str, str]:
    study = f"/studies/{ds.StudyInstanceUID}"
    series = f"{study}/series/{ds.SeriesInstanceUID}"
    return study, series, f"{series}/instances/{ds.SOPInstanceUID}"


def test_thumbnails_at_every_level_are_cached_and_follow_the_series(
    server: ServerProcess,
) -> None:
    client = DICOMwebClient(url=server.dicomweb)
    series = _series_of(3)
    client.store_instances(datasets=series)
    study_path, series_path, _ = _paths(series[0])
    middle = _paths(series[1])[2]
    with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
        by_level = {
            path: http.get(path + "/thumbnail")
            for path in (study_path, series_path, middle, middle + "/frames/1")
        }
        for response in by_level.values():
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/jpeg"
            assert response.headers["cross-origin-resource-policy"] == "cross-origin"
            assert _image(response.content).size == (128, 128)
        assert by_level[series_path].content == by_level[middle].content
        assert http.get(series_path + "/thumbnail").content == by_level[series_path].content
        small = http.get(series_path + "/thumbnail", params={"viewport": "64,32"})
        assert _image(small.content).size == (32, 32)

        added = _series_of(2)[1]
        added.StudyInstanceUID, added.SeriesInstanceUID = (
            study_path[9:],
            series[0].SeriesInstanceUID,
        )
        added.InstanceNumber = 4
        client.store_instances(datasets=[added])
        # four instances now: the middle one is the second, which changed nothing;
        # a fifth makes the third the middle one, and the thumbnail follows.
        fifth = _series_of(3)[2]
        fifth.StudyInstanceUID, fifth.SeriesInstanceUID = (
            added.StudyInstanceUID,
            added.SeriesInstanceUID,
        )
        fifth.InstanceNumber = 5
        client.store_instances(datasets=[fifth])
        after = http.get(series_path + "/thumbnail")
        third = http.get(_paths(series[2])[2] + "/thumbnail")
        assert after.content == third.content != by_level[series_path].content
        png = http.get(series_path + "/thumbnail", headers={"Accept": "image/png"})
        assert _image(png.content).format == "PNG"
        assert http.get("/studies/1.2.3.4/thumbnail").status_code == 404


def test_wado_uri_serves_dicom_and_images_and_refuses_bad_requests(
    server: ServerProcess,
) -> None:
    ct, rle = _dataset("CT_small.dcm"), _dataset("SC_rgb_rle_2frame.dcm")
    DICOMwebClient(url=server.dicomweb).store_instances(datasets=[ct, rle])
    base = {
        "requestType": "WADO",
        "studyUID": ct.StudyInstanceUID,
        "seriesUID": ct.SeriesInstanceUID,
        "objectUID": ct.SOPInstanceUID,
    }
    with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
        default = http.get("/wado", params=base)
        assert default.headers["content-type"] == "image/jpeg"
        assert _image(default.content).size == (128, 128)
        dicom = http.get("/wado", params={**base, "contentType": "application/dicom"})
        served = pydicom.dcmread(BytesIO(dicom.content))
        assert served.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert np.array_equal(served.pixel_array, ct.pixel_array)
        implicit = http.get(
            "/wado",
            params={
                **base,
                "contentType": "application/dicom",
                "transferSyntax": "1.2.840.10008.1.2",
            },
        )
        assert (
            pydicom.dcmread(BytesIO(implicit.content)).file_meta.TransferSyntaxUID
            == "1.2.840.10008.1.2"
        )
        sized = http.get(
            "/wado",
            params={
                **base,
                "contentType": "image/png",
                "rows": "64",
                "windowCenter": "40",
                "windowWidth": "400",
            },
        )
        assert (_image(sized.content).format, _image(sized.content).size) == ("PNG", (64, 64))
        frame = http.get(
            "/wado",
            params={
                **base,
                "seriesUID": rle.SeriesInstanceUID,
                "studyUID": rle.StudyInstanceUID,
                "objectUID": rle.SOPInstanceUID,
                "contentType": "image/png",
                "frameNumber": "2",
            },
        )
        expected = rle.pixel_array[1].astype(float)
        assert np.abs(np.asarray(_image(frame.content), dtype=float) - expected).max() <= 1
        refused = [
            {**base, "anonymize": "yes"},
            {**base, "requestType": "WADO-RS"},
            {key: value for key, value in base.items() if key != "objectUID"},
            {**base, "objectUID": "1.2.abc"},
            {**base, "windowCenter": "40"},
            {**base, "contentType": "application/dicom", "rows": "64"},
            {**base, "contentType": "image/jpeg", "transferSyntax": "1.2.840.10008.1.2"},
            {**base, "contentType": "image/jpeg", "frameNumber": "2"},
        ]
        assert [http.get("/wado", params=params).status_code for params in refused] == [400] * 8
        unknown = http.get("/wado", params={**base, "objectUID": "1.2.3.4"})
        assert unknown.status_code == 404


def test_dicomweb_client_rendered_calls(server: ServerProcess) -> None:
    client = DICOMwebClient(url=server.dicomweb)
    ct, rle = _dataset("CT_small.dcm"), _dataset("SC_rgb_rle_2frame.dcm")
    client.store_instances(datasets=[ct, rle])
    jpeg = client.retrieve_instance_rendered(
        ct.StudyInstanceUID,
        ct.SeriesInstanceUID,
        ct.SOPInstanceUID,
        media_types=("image/jpeg",),
        params={"window": "40,400", "viewport": "64,64"},
    )
    assert (_image(jpeg).format, _image(jpeg).size, _image(jpeg).mode) == ("JPEG", (64, 64), "L")
    png = client.retrieve_instance_frames_rendered(
        rle.StudyInstanceUID,
        rle.SeriesInstanceUID,
        rle.SOPInstanceUID,
        frame_numbers=[2],
        media_types=("image/png",),
    )
    assert np.array_equal(np.asarray(_image(png)), rle.pixel_array[1])
    series = client.retrieve_series_rendered(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, media_types=("image/png",)
    )
    assert _image(series).size == (128, 128)
