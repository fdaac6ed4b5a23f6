"""The Python dicomweb-client retrieving from a real ``skypacs serve`` on Postgres and S3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file

from skypacs.config import S3StorageSettings
from tests.fixtures.skypacs import ServerProcess, start_server
from tests.integration.stow_helpers import with_new_uids

pytestmark = pytest.mark.integration


@pytest.fixture
def server(pg_dsn: str, s3_settings: S3StorageSettings, tmp_path: Path) -> Iterator[ServerProcess]:
    assert s3_settings.access_key_id
    assert s3_settings.secret_access_key
    env = {
        "SKYPACS_INDEX__DSN": pg_dsn,
        "SKYPACS_STORAGE__BACKEND": "s3",
        "SKYPACS_STORAGE__S3__BUCKET": str(s3_settings.bucket),
        "SKYPACS_STORAGE__S3__ENDPOINT_URL": str(s3_settings.endpoint_url),
        "SKYPACS_STORAGE__S3__ACCESS_KEY_ID": s3_settings.access_key_id.get_secret_value(),
        "SKYPACS_STORAGE__S3__SECRET_ACCESS_KEY": (
            s3_settings.secret_access_key.get_secret_value()
        ),
    }
    process = start_server(tmp_path / "var", env=env)
    try:
        yield process
    finally:
        process.stop()


def _dataset(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    assert isinstance(path, str)
    return with_new_uids(pydicom.dcmread(path))


def test_dicomweb_client_retrieves_instances_frames_metadata_and_bulk(
    server: ServerProcess,
) -> None:
    client = DICOMwebClient(url=server.dicomweb)
    ct, rle = _dataset("CT_small.dcm"), _dataset("SC_rgb_rle_2frame.dcm")
    client.store_instances(datasets=[ct, rle])

    served = client.retrieve_instance(ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)
    assert np.array_equal(served.pixel_array, ct.pixel_array)
    series = client.retrieve_series(rle.StudyInstanceUID, rle.SeriesInstanceUID)
    assert [str(ds.SOPInstanceUID) for ds in series] == [rle.SOPInstanceUID]
    assert np.array_equal(series[0].pixel_array, rle.pixel_array)

    frames = client.retrieve_instance_frames(
        rle.StudyInstanceUID,
        rle.SeriesInstanceUID,
        rle.SOPInstanceUID,
        frame_numbers=[2],
        media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
    )
    expected = rle.pixel_array[1]
    assert np.array_equal(np.frombuffer(frames[0], np.uint8).reshape(expected.shape), expected)

    metadata = client.retrieve_instance_metadata(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID
    )
    uri = metadata["7FE00010"]["BulkDataURI"]
    assert uri.startswith(server.dicomweb + "/studies/")
    assert uri.endswith("/bulkdata/7FE00010")
    [pixels] = client.retrieve_bulkdata(uri)
    assert pixels == ct.PixelData
