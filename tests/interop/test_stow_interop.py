"""STOW-RS with real peers: Orthanc's DICOMweb client stores into SkyPACS, and
DCMTK reads back what SkyPACS keeps."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from skypacs.storage import FilesystemBlobStore
from tests.fixtures.skypacs import ServerProcess
from tests.interop.conftest import Orthanc

pytestmark = pytest.mark.interop

FILES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "rtdose.dcm")


def _testdata(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(path)


async def _stored_keys(server: ServerProcess, uids: list[str]) -> dict[str, str]:
    dsn = f"postgresql://postgres@/skypacs?host={server.data_dir / 'postgres'}"
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT sop_instance_uid, blob_key FROM instances"
            " WHERE status = 'stored' AND sop_instance_uid = ANY($1::text[])",
            uids,
        )
    finally:
        await conn.close()
    return {r["sop_instance_uid"]: r["blob_key"] for r in rows}


async def _blob_bytes(server: ServerProcess, key: str) -> bytes:
    store = FilesystemBlobStore(server.data_dir / "blobs", read_chunk_bytes=1 << 20)
    try:
        return await store.read(key)
    finally:
        await store.aclose()


def test_orthanc_stores_into_skypacs_and_dcmtk_reads_it_back(
    orthanc: Orthanc, skypacs_server: ServerProcess, dcmtk: dict[str, str], tmp_path: Path
) -> None:
    paths = [_testdata(name) for name in FILES]
    ids = [orthanc.upload(path) for path in paths]
    reply = httpx.post(
        f"{orthanc.url}/dicom-web/servers/skypacs/stow",
        json={"Resources": ids, "Synchronous": True},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text

    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    keys = asyncio.run(_stored_keys(skypacs_server, uids))
    assert set(keys) == set(uids)

    for uid in uids:
        stored = tmp_path / f"{uid}.dcm"
        stored.write_bytes(asyncio.run(_blob_bytes(skypacs_server, keys[uid])))
        dump = subprocess.run(
            [dcmtk["dcmdump"], "+E", "-q", "--search", "SOPInstanceUID", str(stored)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert dump.returncode == 0, dump.stderr
        assert uid in dump.stdout
        assert stored.read_bytes()[:128] == bytes(128)  # preamble zeroed on store


def test_stored_copy_keeps_orthancs_dataset(
    orthanc: Orthanc, skypacs_server: ServerProcess
) -> None:
    """What Orthanc sends is what SkyPACS keeps (same attributes and pixels)."""
    path = _testdata("MR_small.dcm")
    original = pydicom.dcmread(path)
    keys = asyncio.run(_stored_keys(skypacs_server, [str(original.SOPInstanceUID)]))
    if not keys:  # this test may run alone: store through Orthanc first
        orthanc_id = orthanc.upload(path)
        reply = httpx.post(
            f"{orthanc.url}/dicom-web/servers/skypacs/stow",
            json={"Resources": [orthanc_id], "Synchronous": True},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        keys = asyncio.run(_stored_keys(skypacs_server, [str(original.SOPInstanceUID)]))
    data = asyncio.run(_blob_bytes(skypacs_server, keys[str(original.SOPInstanceUID)]))
    from io import BytesIO

    stored = pydicom.dcmread(BytesIO(data))
    assert stored.PatientName == original.PatientName
    assert (stored.pixel_array == original.pixel_array).all()
