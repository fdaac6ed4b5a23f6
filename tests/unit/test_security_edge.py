"""Edge middleware and the audit queue, driven through real ASGI calls in process."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from skypacs.index.audit_log import AuditRow
from skypacs.security.audit import AuditTrail, audit_metrics
from skypacs.security.limits import RequestLimitsMiddleware

pytestmark = pytest.mark.unit


async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/slow":
        await asyncio.sleep(30)
    await PlainTextResponse("ok")(scope, receive, send)


def client(timeout_s: float = 0.2, max_header_bytes: int = 4096) -> httpx.AsyncClient:
    app = RequestLimitsMiddleware(slow_app, max_header_bytes=max_header_bytes, timeout_s=timeout_s)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_request_without_an_answer_in_time_gets_408() -> None:
    async with client() as http:
        response = await http.get("/slow")
        assert response.status_code == 408
        assert response.json()["error"] == "request timeout"
        assert (await http.get("/fast")).status_code == 200


async def test_oversize_headers_get_431() -> None:
    async with client() as http:
        response = await http.get("/fast", headers={"X-Big": "a" * 5000})
        assert response.status_code == 431


async def test_undecodable_query_gets_400() -> None:
    async with client() as http:
        response = await http.get("/fast?PatientName=%FF%FE")
        assert response.status_code == 400
        assert "UTF-8" in response.json()["detail"]


def _row(subject: str) -> AuditRow:
    return AuditRow(
        occurred_at=datetime.now(UTC), request_id=None, subject=subject, key_name=None,
        auth_method="anonymous", role="admin", action="search", method="GET",
        route="/dicom-web/studies", study_uid=None, series_uid=None, sop_instance_uid=None,
        query=None, client_address="127.0.0.1", status=200, outcome="success",
    )  # fmt: skip


async def test_records_that_cannot_be_stored_are_counted() -> None:
    _written, dropped = audit_metrics()
    failed_before = dropped.labels("write_failed")._value.get()
    full_before = dropped.labels("queue_full")._value.get()
    trail = AuditTrail(lambda: None, queue_size=2, batch_size=10)  # no index to write to
    for n in range(5):
        trail.record(_row(f"user-{n}"))
    await trail.aclose()
    assert dropped.labels("queue_full")._value.get() - full_before == 3
    assert dropped.labels("write_failed")._value.get() - failed_before == 2
