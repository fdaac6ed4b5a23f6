"""Start ``skypacs serve`` (filesystem or S3 blobs) on a free loopback port."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psutil

from skypacs import __version__ as skypacs_version

from .processes import LOOPBACK, free_port, http_ok, spawn, wait_until
from .servers import RunningServer

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


def skypacs_executable() -> str:
    return str(Path(sys.executable).with_name("skypacs"))


def worker_pids(main_pid: int) -> list[int]:
    """The server processes started by the ``serve`` supervisor (none with one worker)."""
    try:
        return [child.pid for child in psutil.Process(main_pid).children(recursive=True)]
    except psutil.Error:
        return []


def postgres_pids(data_dir: Path) -> list[int]:
    """The embedded Postgres postmaster and its backends, found via ``postmaster.pid``."""
    pid_file = data_dir / "postgres" / "postmaster.pid"
    try:
        postmaster = int(pid_file.read_text().split()[0])
        process = psutil.Process(postmaster)
        return [postmaster, *(child.pid for child in process.children(recursive=True))]
    except (OSError, ValueError, IndexError, psutil.Error):
        return []


def server_tuning() -> dict[str, str]:
    """What the README advises for throughput: one server process per CPU core."""
    return {"SKYPACS_HTTP__WORKERS": str(os.cpu_count() or 1)}


@contextmanager
def run_skypacs(
    label: str, data_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[RunningServer]:
    """A fresh ``skypacs serve`` with its own data dir, stopped (SIGINT) on exit."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**server_tuning(), **(env or {})}
    command = [
        skypacs_executable(),
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    child = spawn(label, command, data_dir.parent / f"{label}.log", env=env)
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(child, http_ok(f"{base}/readyz"), READY_TIMEOUT_S, "/readyz")
        yield RunningServer(
            label=label,
            dicomweb=f"{base}/dicom-web",
            main_pid=child.pid,
            helper_pids=lambda: sorted({*worker_pids(child.pid), *postgres_pids(data_dir)}),
            versions={"skypacs": skypacs_version},
            settings={key: value for key, value in (env or {}).items() if "SECRET" not in key},
        )
    finally:
        child.stop(signal.SIGINT, STOP_TIMEOUT_S)
