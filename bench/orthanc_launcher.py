"""A fresh Orthanc with its DICOMweb plugin, tuned as its own documentation advises.

The tuning follows the Orthanc Book ("Scalability of Orthanc" FAQ and the DICOMweb
plugin page): no storage compression, no job persistence, finds answered from the
index only, capped find results, keep-alive with TCP_NODELAY, and for DICOMweb
``StudiesMetadata: MainDicomTags`` with ``SeriesMetadata: Full`` (the pairing the
plugin page gives for viewers that need both speed and accurate series metadata).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from .processes import LOOPBACK, LaunchError, free_port, http_ok, spawn, wait_until
from .servers import RunningServer

PLUGIN_PATHS = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/plugins/libOrthancDicomWeb.so"),
)
READY_TIMEOUT_S = 60.0
HTTP_THREADS = 50
FIND_LIMIT = 100

TUNING: dict[str, Any] = {
    "StorageCompression": False,
    "SaveJobs": False,
    "StorageAccessOnFind": "Never",
    "LimitFindResults": FIND_LIMIT,
    "LimitFindInstances": FIND_LIMIT,
    "KeepAlive": True,
    "TcpNoDelay": True,
    "HttpThreadsCount": HTTP_THREADS,
}

DICOMWEB_TUNING: dict[str, Any] = {
    "StudiesMetadata": "MainDicomTags",
    "SeriesMetadata": "Full",
}


def orthanc_executable() -> str | None:
    return shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")


def dicomweb_plugin() -> Path | None:
    return next((path for path in PLUGIN_PATHS if path.is_file()), None)


def available() -> bool:
    """Whether Orthanc and its DICOMweb plugin are installed here."""
    return orthanc_executable() is not None and dicomweb_plugin() is not None


def orthanc_config(root: Path, http_port: int, plugin: Path) -> dict[str, Any]:
    """Loopback-only HTTP, no DICOM listener, fresh storage under ``root``."""
    storage = root / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    return {
        "Name": "SKYPACS-BENCH",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(plugin)],
        **TUNING,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", **DICOMWEB_TUNING},
    }


def _versions(base: str) -> dict[str, str]:
    versions: dict[str, str] = {}
    for key, path in (("orthanc", "/system"), ("orthanc-dicomweb", "/plugins/dicom-web")):
        try:
            versions[key] = str(httpx.get(base + path, timeout=5).json().get("Version", ""))
        except (httpx.HTTPError, ValueError):
            versions[key] = ""
    return versions


@contextmanager
def run_orthanc(root: Path) -> Iterator[RunningServer]:
    """Orthanc on a free loopback port with a fresh storage dir, stopped on exit."""
    executable, plugin = orthanc_executable(), dicomweb_plugin()
    if executable is None or plugin is None:
        raise LaunchError("Orthanc and its DICOMweb plugin are not installed")
    http_port = free_port()
    config = orthanc_config(root, http_port, plugin)
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=1))
    child = spawn("orthanc", [executable, str(config_path)], root / "orthanc.log")
    base = f"http://{LOOPBACK}:{http_port}"
    try:
        wait_until(child, http_ok(f"{base}/system"), READY_TIMEOUT_S, "/system")
        yield RunningServer(
            label="Orthanc",
            dicomweb=f"{base}/dicom-web",
            main_pid=child.pid,
            versions=_versions(base),
            settings={**TUNING, "DicomWeb": DICOMWEB_TUNING},
        )
    finally:
        child.stop()
