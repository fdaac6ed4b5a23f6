"""``skypacs serve`` (and one-service commands) as a user runs them: start, probe, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.ports import free_port

pytestmark = pytest.mark.integration

SKYPACS = str(Path(sys.executable).parent / "skypacs")
START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 60.0


def clean_env() -> dict[str, str]:
    """The caller's environment without SkyPACS settings (embedded defaults)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("SKYPACS_")}


class Serve:
    """One ``skypacs serve`` process with its output captured to a file."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        command: str = "serve",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [SKYPACS, command, "--port", str(self.port), "--data-dir", str(data_dir)],
                env={**clean_env(), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Poll /healthz then /readyz until both answer 200 (or the process dies)."""
        deadline = time.monotonic() + START_DEADLINE_S
        pending = ["/healthz", "/readyz"]
        with httpx.Client(base_url=self.base, timeout=5.0) as client:
            while pending and time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"skypacs serve exited early:\n{self.output()}")
                try:
                    if client.get(pending[0]).status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        if pending:
            pytest.fail(f"skypacs serve never answered {pending[0]}:\n{self.output()}")

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=STOP_DEADLINE_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE_S)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for server in started:
        server.kill()


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """Postgres server processes whose command line names ``data_dir``."""
    found = []
    needle = str(data_dir)
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "postgres" in (proc.info["name"] or "") and needle in cmdline:
            found.append(proc)
    return found


def test_serve_starts_stops_on_ctrl_c_and_restarts(
    tmp_path: Path, data_dir: Path, servers: list[Serve]
) -> None:
    first = Serve(data_dir, tmp_path / "first.log")
    servers.append(first)
    first.wait_ready()
    readyz = httpx.get(first.base + "/readyz").json()
    assert readyz["dependencies"] == {"index": "ok", "blobs": "ok", "events": "ok"}
    assert postgres_processes(data_dir), "embedded Postgres should run in the data dir"
    banner = f"SkyPACS listening on http://127.0.0.1:{first.port}/dicom-web (data in {data_dir})"
    assert banner in first.output()

    assert first.stop(signal.SIGINT) == 0
    assert postgres_processes(data_dir) == []

    second = Serve(data_dir, tmp_path / "second.log")
    servers.append(second)
    second.wait_ready()
    response = httpx.get(second.base + "/dicom-web/studies/1.2.x/series")
    assert response.status_code == 400
    assert response.json()["error"] == "bad request"
    assert second.stop(signal.SIGTERM) == 0
    assert postgres_processes(data_dir) == []


def test_serve_logs_json_lines(tmp_path: Path, data_dir: Path, servers: list[Serve]) -> None:
    import orjson

    server = Serve(data_dir, tmp_path / "serve.log")
    servers.append(server)
    server.wait_ready()
    httpx.get(server.base + "/dicom-web/studies/1.2.3/series?PatientName=DOE")
    assert server.stop(signal.SIGINT) == 0
    lines = [line for line in server.output().splitlines() if line.startswith("{")]
    records = [orjson.loads(line) for line in lines]
    access = [r for r in records if r["logger"] == "skypacs.access"]
    assert any(r["route"] == "/dicom-web/studies/{study}/series" for r in access)
    assert "PatientName" not in server.output()
    assert "1.2.3" not in "\n".join(lines)


def test_one_service_on_an_external_index(
    tmp_path: Path, pg_dsn: str, servers: list[Serve]
) -> None:
    server = Serve(tmp_path / "var", tmp_path / "qido.log", "qido", {"SKYPACS_INDEX__DSN": pg_dsn})
    servers.append(server)
    server.wait_ready()
    assert not (tmp_path / "var" / "postgres").exists()
    assert server.stop(signal.SIGTERM) == 0


def test_one_service_refuses_an_unmigrated_index(
    tmp_path: Path, pg_empty_dsn: str, servers: list[Serve]
) -> None:
    env = {"SKYPACS_INDEX__DSN": pg_empty_dsn}
    server = Serve(tmp_path / "var", tmp_path / "wado.log", "wado", env)
    servers.append(server)
    status = server.process.wait(timeout=STOP_DEADLINE_S)
    assert status != 0
    assert "skypacs migrate" in server.output()
