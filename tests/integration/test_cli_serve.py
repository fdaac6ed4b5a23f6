"""``skypacs serve`` (and one-service commands) as a user runs them: start, probe, stop."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.cli_helpers import STOP_DEADLINE_S, Serve, postgres_processes

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for server in started:
        server.kill()


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
