"""Real interop peers: Orthanc (with its DICOMweb plugin) and DCMTK tools."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.ports import free_port
from tests.fixtures.skypacs import ServerProcess

ORTHANC = shutil.which("Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass
class Orthanc:
    url: str
    dicom_port: int
    process: subprocess.Popen[bytes]

    def upload(self, path: Path) -> str:
        """Store one Part 10 file in Orthanc; return its Orthanc instance id."""
        reply = httpx.post(f"{self.url}/instances", content=path.read_bytes(), timeout=30)
        reply.raise_for_status()
        return str(reply.json()["ID"])


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/system", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("Orthanc did not start within 60 s")


@pytest.fixture(scope="session")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, skypacs_server: ServerProcess
) -> Iterator[Orthanc]:
    """A fresh Orthanc whose DICOMweb client knows SkyPACS as server ``skypacs``."""
    if ORTHANC is None or not DICOMWEB_PLUGIN.exists():
        pytest.fail(
            "Orthanc and orthanc-dicomweb are required (apt-get install orthanc orthanc-dicomweb)"
        )
    root = Path(tmp_path_factory.mktemp("orthanc"))
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "SKYPACS-INTEROP",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "Servers": {"skypacs": [f"{skypacs_server.dicomweb}/"]},
        },
    }
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log = root / "orthanc.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [ORTHANC, str(config_path)], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait_for(url, process, log)
        yield Orthanc(url=url, dicom_port=dicom_port, process=process)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def dcmtk() -> dict[str, str]:
    """Paths of the DCMTK tools the interop tests drive."""
    tools = {}
    for name in ("dcmdump", "storescu", "echoscu", "findscu", "movescu", "getscu"):
        path = shutil.which(name)
        if path is None:
            pytest.fail(f"DCMTK's {name} is required (apt-get install dcmtk)")
        tools[name] = path
    return tools
