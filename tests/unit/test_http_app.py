"""The shared app factory: probes, lifespan, error mapping, CORS, request ids."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import asyncpg
import orjson
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from skypacs.config import HttpSettings, Settings
from skypacs.errors import DependencyUnavailable, NotFound, StorageFull
from skypacs.events import open_events
from skypacs.http import create_app, on_shutdown
from skypacs.observability import JsonFormatter
from skypacs.runtime import Runtime
from skypacs.storage import open_blob_store

pytestmark = pytest.mark.unit

ORIGIN = "https://viewer.example.org"


class StandInIndex:
    """Stands in for the Postgres index in unit tests (no database server here).

    A real unreachable index is covered by the integration tests; here the
    outage is switched on and off to check how the app reports it.
    """

    def __init__(self) -> None:
        self.up = True

    async def ping(self) -> None:
        if not self.up:
            raise DependencyUnavailable("index unreachable: ConnectionRefusedError")


def failing_router() -> APIRouter:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail: password=hunter2")

    @router.get("/missing")
    async def missing() -> None:
        raise NotFound("no such study")

    @router.get("/down")
    async def down() -> None:
        raise DependencyUnavailable("blob store unreachable")

    @router.get("/pg-down")
    async def pg_down() -> None:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    @router.get("/refused")
    async def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused 10.0.0.7:5432")

    @router.get("/full")
    async def full() -> None:
        raise StorageFull("no space left")

    @router.get("/count")
    async def count(limit: int) -> dict[str, int]:
        return {"limit": limit}

    return router


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index = StandInIndex()
        self.opened = 0
        self.closed = 0

    @asynccontextmanager
    async def runtime(self, settings: Settings) -> AsyncIterator[Runtime]:
        self.opened += 1
        async with (
            open_blob_store(settings) as blobs,
            open_events(settings, self.index, relay=False) as events,  # type: ignore[arg-type]
        ):
            yield Runtime(settings=settings, index=self.index, blobs=blobs, events=events)  # type: ignore[arg-type]
        self.closed += 1

    def app_client(self) -> TestClient:
        app = create_app(
            title="Test",
            settings=self.settings,
            routers=[failing_router()],
            runtime_factory=self.runtime,
            service="test",
        )
        return TestClient(app)


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(Settings(data_dir=tmp_path))


@pytest.fixture
def client(harness: Harness) -> Iterator[TestClient]:
    with harness.app_client() as client:
        yield client


def test_lifespan_opens_and_closes_the_runtime(harness: Harness) -> None:
    with harness.app_client() as client:
        assert harness.opened == 1
        assert client.get("/healthz").status_code == 200
    assert harness.closed == 1


def test_shutdown_hooks_run_before_the_runtime_closes(harness: Harness) -> None:
    closed_when_run: list[int] = []

    async def hook() -> None:
        closed_when_run.append(harness.closed)

    async def failing_hook() -> None:
        raise RuntimeError("boom")

    with harness.app_client() as client:
        app = cast(FastAPI, client.app)
        on_shutdown(app, failing_hook)
        on_shutdown(app, hook)
    assert closed_when_run == [0]
    assert harness.closed == 1


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_names_every_dependency(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["dependencies"] == {"index": "ok", "blobs": "ok", "events": "ok"}


def test_readyz_503_names_what_is_down(harness: Harness, client: TestClient) -> None:
    harness.index.up = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    deps = response.json()["dependencies"]
    assert deps["index"].startswith("unavailable")
    assert deps["blobs"] == "ok"
    assert deps["events"] == "ok"


def test_skypacs_error_maps_to_status_and_small_body(client: TestClient) -> None:
    response = client.get("/dicom-web/missing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "not found", "detail": "no such study"}


def test_storage_full_is_507(client: TestClient) -> None:
    assert client.get("/dicom-web/full").status_code == 507


def test_dependency_unavailable_has_retry_after(client: TestClient) -> None:
    response = client.get("/dicom-web/down")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"] == "service unavailable"


@pytest.mark.parametrize("path", ["/dicom-web/pg-down", "/dicom-web/refused"])
def test_backend_connection_errors_are_503(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert "10.0.0.7" not in response.text


def test_unexpected_error_is_generic_500_with_request_id(client: TestClient) -> None:
    response = client.get("/dicom-web/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal error"
    assert "req-42" in body["detail"]
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text


def test_unexpected_error_is_logged_with_traceback_and_request_id(client: TestClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    http_log = logging.getLogger("skypacs.http")
    http_log.addHandler(handler)
    try:
        client.get("/dicom-web/boom", headers={"X-Request-ID": "req-logged"})
    finally:
        http_log.removeHandler(handler)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    failures = [line for line in lines if line["level"] == "ERROR"]
    assert failures
    assert failures[0]["request_id"] == "req-logged"
    assert "RuntimeError: secret internal detail" in failures[0]["exc"]


def test_invalid_query_parameter_is_400_naming_it(client: TestClient) -> None:
    response = client.get("/dicom-web/count", params={"limit": "many"})
    assert response.status_code == 400
    assert "limit" in response.json()["detail"]


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/dicom-web/nowhere")
    assert response.status_code == 404
    assert response.json()["error"] == "not found"


def test_wrong_method_is_json_405_with_allow(client: TestClient) -> None:
    response = client.post("/dicom-web/missing")
    assert response.status_code == 405
    assert response.json()["error"] == "method not allowed"
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/dicom-web/nowhere", 404), ("/dicom-web/boom", 500), ("/dicom-web/down", 503)],
)
def test_cors_headers_on_error_responses(client: TestClient, path: str, status: int) -> None:
    response = client.get(path, headers={"Origin": ORIGIN})
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = response.headers["access-control-expose-headers"]
    for name in ("Content-Range", "ETag", "Warning", "Content-Location", "Location"):
        assert name in exposed


def test_cors_preflight_allows_dicomweb_headers(client: TestClient) -> None:
    response = client.options(
        "/dicom-web/missing",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Accept, Authorization, Content-Type",
        },
    )
    assert response.status_code == 200
    allowed = response.headers["access-control-allow-headers"].lower()
    for name in ("accept", "authorization", "content-type"):
        assert name in allowed
    methods = response.headers["access-control-allow-methods"]
    for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
        assert method in methods
    assert "access-control-allow-credentials" not in response.headers


def test_cors_explicit_origins(harness: Harness, tmp_path: Path) -> None:
    harness.settings = Settings(data_dir=tmp_path, http=HttpSettings(cors_allow_origins=[ORIGIN]))
    with harness.app_client() as client:
        allowed = client.get("/dicom-web/nowhere", headers={"Origin": ORIGIN})
        other = client.get("/dicom-web/nowhere", headers={"Origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in other.headers


def test_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123.4:5"})
    assert response.headers["x-request-id"] == "abc-123.4:5"


@pytest.mark.parametrize("given", [None, "has space", "x" * 200, "<script>"])
def test_request_id_is_generated_when_absent_or_malformed(
    client: TestClient, given: str | None
) -> None:
    headers = {"X-Request-ID": given} if given else {}
    response = client.get("/healthz", headers=headers)
    minted = response.headers["x-request-id"]
    assert minted != given
    assert len(minted) == 32
    assert all(c in "0123456789abcdef" for c in minted)


def test_request_id_on_error_responses(client: TestClient) -> None:
    response = client.get("/dicom-web/nowhere", headers={"X-Request-ID": "trace-1"})
    assert response.headers["x-request-id"] == "trace-1"


def test_client_library_connection_errors_count_once_loaded() -> None:
    import aiohttp
    import botocore.exceptions
    from aiokafka.errors import KafkaConnectionError

    from skypacs.http import is_connection_error

    assert is_connection_error(aiohttp.ClientConnectorError.__new__(aiohttp.ClientConnectorError))
    assert is_connection_error(botocore.exceptions.EndpointConnectionError(endpoint_url="x"))
    assert is_connection_error(KafkaConnectionError())
    assert is_connection_error(ConnectionRefusedError())
    assert not is_connection_error(ValueError("bad input"))
