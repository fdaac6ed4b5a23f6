"""API keys end to end: ``skypacs apikey create|list|revoke`` against a running
``skypacs serve`` that requires credentials, used by the Python dicomweb-client;
and the refusal to listen on a public address without authentication.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from requests import HTTPError

from tests.fixtures.ports import free_port
from tests.fixtures.skypacs import ServerProcess, skypacs_executable, start_server
from tests.integration.stow_helpers import synthesize_study

pytestmark = pytest.mark.integration


def skypacs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [skypacs_executable(), *args],
        env={**os.environ, "SKYPACS_LOG__LEVEL": "WARNING", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def client(server: ServerProcess, key: str | None) -> DICOMwebClient:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return DICOMwebClient(server.dicomweb, headers=headers)


def test_public_listener_without_auth_is_refused(tmp_path: Path) -> None:
    env = {"SKYPACS_DATA_DIR": str(tmp_path)}
    result = skypacs("serve", "--host", "0.0.0.0", "--port", str(free_port()), env=env)
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without authentication" in result.stderr
    assert "SKYPACS_AUTH__ALLOW_ANONYMOUS=true" in result.stderr
    assert "SKYPACS_AUTH__OIDC__ISSUER" in result.stderr
    assert not (tmp_path / "postgres").exists()


async def test_allow_anonymous_starts_with_a_warning(pg_dsn: str, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {
        **os.environ,
        "SKYPACS_INDEX__DSN": pg_dsn,
        "SKYPACS_AUTH__ALLOW_ANONYMOUS": "true",
        "SKYPACS_STORAGE__FILESYSTEM__FSYNC": "false",
    }
    args = [skypacs_executable(), "serve", "--host", "0.0.0.0", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*args, "--data-dir", str(tmp_path / "var")], stdout=log, stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
    try:
        ready = await asyncio.to_thread(_wait_ready, f"http://127.0.0.1:{port}", process)
        assert ready, log_path.read_text()
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.to_thread(process.wait, 60)
    assert "SKYPACS_AUTH__ALLOW_ANONYMOUS=true" in log_path.read_text()
    assert '"level": "WARNING"' in log_path.read_text().replace('":"', '": "')


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


async def test_api_key_create_use_revoke(pg_dsn: str, tmp_path: Path) -> None:
    env = {"SKYPACS_INDEX__DSN": pg_dsn, "SKYPACS_AUTH__REQUIRED": "true"}
    server = await asyncio.to_thread(start_server, tmp_path / "var", env=env)
    try:
        await asyncio.to_thread(_exercise_keys, server, env)
    finally:
        await asyncio.to_thread(server.stop)


def _exercise_keys(server: ServerProcess, env: dict[str, str]) -> None:
    created = skypacs("apikey", "create", "--role", "writer", "--name", "ct-scanner", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("skp_")
    assert "shown once" in created.stderr

    listed = skypacs("apikey", "list", env=env)
    assert "ct-scanner" in listed.stdout
    assert "writer" in listed.stdout
    assert key not in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout

    study, datasets = synthesize_study(2)
    with pytest.raises(HTTPError) as refused:
        client(server, None).search_for_studies()
    assert refused.value.response.status_code == 401
    scanner = client(server, key)
    scanner.store_instances(datasets)
    found = scanner.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert [r["0020000D"]["Value"][0] for r in found] == [study]

    revoked = skypacs("apikey", "revoke", "ct-scanner", env=env)
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(HTTPError) as after:
        scanner.search_for_studies()
    assert after.value.response.status_code == 401
    assert "revoked" in after.value.response.text
    again = skypacs("apikey", "revoke", "ct-scanner", env=env)
    assert again.returncode != 0
    assert skypacs("apikey", "list", "--all", env=env).stdout.count("revoked") == 1
