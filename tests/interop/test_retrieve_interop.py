"""QIDO-RS and WADO-RS with a real peer: Orthanc's DICOMweb client searches
SkyPACS and pulls a study out of it, then holds exactly what was stored."""

from __future__ import annotations

import subprocess
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.fixtures.skypacs import ServerProcess
from tests.interop.conftest import Orthanc

pytestmark = pytest.mark.interop


def _store_in_skypacs(server: ServerProcess, path: Path) -> pydicom.Dataset:
    reply = httpx.post(
        f"{server.dicomweb}/studies",
        content=path.read_bytes(),
        headers={"Content-Type": "application/dicom"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return pydicom.dcmread(path)


def _testdata(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None, name
    return Path(found)


def test_orthanc_searches_skypacs(orthanc: Orthanc, skypacs_server: ServerProcess) -> None:
    original = _store_in_skypacs(skypacs_server, _testdata("CT_small.dcm"))
    reply = httpx.post(
        f"{orthanc.url}/dicom-web/servers/skypacs/get",
        json={
            "Uri": "/studies",
            "Arguments": {"PatientID": str(original.PatientID), "includefield": "00081030"},
        },
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    studies = reply.json()
    uids = [study["0020000D"]["Value"][0] for study in studies]
    assert str(original.StudyInstanceUID) in uids


def test_orthanc_retrieves_a_study_from_skypacs(
    orthanc: Orthanc, skypacs_server: ServerProcess
) -> None:
    original = _store_in_skypacs(skypacs_server, _testdata("MR_small_RLE.dcm"))
    reply = httpx.post(
        f"{orthanc.url}/dicom-web/servers/skypacs/retrieve",
        json={"Resources": [{"Study": str(original.StudyInstanceUID)}], "Synchronous": True},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text

    found = httpx.post(
        f"{orthanc.url}/tools/find",
        json={"Level": "Instance", "Query": {"SOPInstanceUID": str(original.SOPInstanceUID)}},
        timeout=30,
    ).json()
    assert len(found) == 1
    data = httpx.get(f"{orthanc.url}/instances/{found[0]}/file", timeout=30).content
    pulled = pydicom.dcmread(BytesIO(data))
    assert pulled.SOPInstanceUID == original.SOPInstanceUID
    assert pulled.PatientName == original.PatientName
    # Orthanc asks for the stored syntax (transfer-syntax=*): the RLE bytes as sent.
    assert pulled.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert pulled.PixelData == original.PixelData
    assert np.array_equal(pulled.pixel_array, original.pixel_array)


def test_dcmtk_reads_what_wado_rs_returns(
    skypacs_server: ServerProcess, dcmtk: dict[str, str], tmp_path: Path
) -> None:
    original = _store_in_skypacs(skypacs_server, _testdata("JPEG2000.dcm"))
    url = (
        f"{skypacs_server.dicomweb}/studies/{original.StudyInstanceUID}"
        f"/series/{original.SeriesInstanceUID}/instances/{original.SOPInstanceUID}"
    )
    reply = httpx.get(url, headers={"Accept": "application/dicom"}, timeout=60)
    assert reply.status_code == 200
    retrieved = tmp_path / "retrieved.dcm"
    retrieved.write_bytes(reply.content)
    dump = subprocess.run(
        [dcmtk["dcmdump"], "+E", "-q", "--search", "TransferSyntaxUID", str(retrieved)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert dump.returncode == 0, dump.stderr
    assert "=LittleEndianExplicit" in dump.stdout  # decoded to Explicit VR Little Endian
    pulled = pydicom.dcmread(retrieved)
    assert np.array_equal(pulled.pixel_array, original.pixel_array)
