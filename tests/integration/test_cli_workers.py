"""``skypacs serve --workers N``: one port, several processes, one supervisor."""

from __future__ import annotations

import http.client
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.cli_helpers import STOP_DEADLINE_S, Serve, postgres_processes
from tests.integration.stow_helpers import ct_small, multipart, part10, related, with_new_uids

pytestmark = pytest.mark.integration

REPLACE_DEADLINE_S = 60.0
SEARCH_ROUTE = "/dicom-web/studies"


@pytest.fixture
def servers() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for server in started:
        server.kill()


def start(tmp_path: Path, servers: list[Serve], *args: str, **env: str) -> Serve:
    server = Serve(tmp_path / "var", tmp_path / "serve.log", env=env, extra_args=args)
    servers.append(server)
    server.wait_ready()
    return server


def worker_pids(server: Serve) -> set[int]:
    """The worker processes of a supervisor (multiprocessing also runs a resource tracker)."""
    pids = set()
    for child in psutil.Process(server.process.pid).children():
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.Error:  # exited, not yet reaped by the supervisor
            continue
    return pids


def searches_counted(base: str, route: str) -> float:
    """``skypacs_http_requests_total`` for GET ``route``, summed over statuses."""
    text = httpx.get(base + "/metrics").text
    pattern = re.compile(r"^skypacs_http_requests_total\{(.*)\} (\S+)$", re.MULTILINE)
    found = pattern.findall(text)
    return sum(float(value) for labels, value in found if f'method="GET",route="{route}"' in labels)


def wait_for_output(server: Serve, text: str) -> None:
    """The supervisor announces once every worker has started, which may follow /readyz."""
    deadline = time.monotonic() + REPLACE_DEADLINE_S
    while text not in server.output():
        if time.monotonic() > deadline:
            pytest.fail(f"never printed {text!r}:\n{server.output()}")
        time.sleep(0.1)


def test_two_workers_share_the_port_index_and_metrics(tmp_path: Path, servers: list[Serve]) -> None:
    server = start(tmp_path, servers, "--workers", "2")
    assert len(worker_pids(server)) == 2
    banner = f"SkyPACS listening on http://127.0.0.1:{server.port}/dicom-web (2 workers, data in "
    wait_for_output(server, banner)

    study_uid = "1.2.826.0.1.3680043.8.498.4242"
    series_uid = study_uid + ".1"
    datasets = [with_new_uids(ct_small(), study=study_uid, series=series_uid) for _ in range(3)]
    body = multipart([part10(ds) for ds in datasets])
    with httpx.Client(base_url=server.base, timeout=30) as client:
        stored = client.post(
            "/dicom-web/studies", content=body, headers={"Content-Type": related()}
        )
        assert stored.status_code == 200
        # Several connections, so that both workers answer some of them.
        for _ in range(8):
            with httpx.Client(base_url=server.base, timeout=30) as fresh:
                found = fresh.get(SEARCH_ROUTE, params={"StudyInstanceUID": study_uid})
                assert found.status_code == 200
                assert [s["0020000D"]["Value"] for s in found.json()] == [[study_uid]]
    assert searches_counted(server.base, SEARCH_ROUTE) == 8

    workers = [psutil.Process(pid) for pid in worker_pids(server)]
    assert server.stop(signal.SIGINT) == 0
    assert psutil.wait_procs(workers, timeout=STOP_DEADLINE_S)[1] == []
    assert postgres_processes(tmp_path / "var") == []


def connections_held(pid: int, port: int) -> int:
    """Established client connections to ``port`` that process ``pid`` serves."""
    held = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in held if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def test_keep_alive_connections_are_spread_over_the_workers(
    tmp_path: Path, servers: list[Serve]
) -> None:
    server = start(tmp_path, servers, "--workers", "2")
    wait_for_output(server, "(2 workers, data in ")
    # All six are in the backlog before any worker wakes: on a shared socket the
    # first worker to wake would accept them all.
    clients = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(6)]
    try:
        for client in clients:
            client.connect()
        for client in clients:
            client.request("GET", "/readyz")
            response = client.getresponse()
            response.read()
            assert response.status == 200
        held = sorted(connections_held(pid, server.port) for pid in worker_pids(server))
        assert held == [3, 3]
    finally:
        for client in clients:
            client.close()
    assert server.stop(signal.SIGTERM) == 0


def test_a_killed_worker_is_replaced(tmp_path: Path, servers: list[Serve]) -> None:
    server = start(tmp_path, servers, "--workers", "2")
    wait_for_output(server, "(2 workers, data in ")
    before = worker_pids(server)
    victim = min(before)
    psutil.Process(victim).kill()
    deadline = time.monotonic() + REPLACE_DEADLINE_S
    while time.monotonic() < deadline:
        now = worker_pids(server)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"worker {victim} was not replaced:\n{server.output()}")
    server.wait_ready()
    for _ in range(4):
        assert httpx.get(server.base + "/readyz", timeout=10).status_code == 200
    assert server.stop(signal.SIGTERM) == 0


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path, servers: list[Serve]) -> None:
    server = start(tmp_path, servers, "--workers", "2")
    workers = [psutil.Process(pid) for pid in worker_pids(server)]
    server.process.kill()
    server.process.wait(timeout=STOP_DEADLINE_S)
    _gone, alive = psutil.wait_procs(workers, timeout=STOP_DEADLINE_S)
    assert alive == []


def test_a_worker_that_cannot_start_stops_the_server(
    tmp_path: Path, pg_empty_dsn: str, servers: list[Serve]
) -> None:
    env = {"SKYPACS_INDEX__DSN": pg_empty_dsn}
    server = Serve(
        tmp_path / "var", tmp_path / "wado.log", "wado", env=env, extra_args=("--workers", "2")
    )
    servers.append(server)
    status = server.process.wait(timeout=STOP_DEADLINE_S)
    assert status == 1
    assert "skypacs migrate" in server.output()
    assert "before it started" in server.output()


@pytest.mark.parametrize("count", ["0", "65", "two"])
def test_a_bad_worker_count_is_refused(tmp_path: Path, count: str, servers: list[Serve]) -> None:
    server = Serve(tmp_path / "var", tmp_path / "serve.log", extra_args=("--workers", count))
    servers.append(server)
    assert server.process.wait(timeout=STOP_DEADLINE_S) == 2
    assert "--workers: a number of processes from 1 to 64" in server.output()


def test_the_worker_setting_is_validated(tmp_path: Path, servers: list[Serve]) -> None:
    server = Serve(tmp_path / "var", tmp_path / "serve.log", env={"SKYPACS_HTTP__WORKERS": "0"})
    servers.append(server)
    assert server.process.wait(timeout=STOP_DEADLINE_S) == 2
    assert "SKYPACS_HTTP__WORKERS" in server.output()
