"""Metrics, access log and JSON logs: route templates, never UIDs or query strings."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from skypacs.config import LogSettings, Settings
from skypacs.observability import (
    ACCESS_LOGGER,
    AUDIT_LOGGER,
    JsonFormatter,
    configure_logging,
    request_id_var,
)
from skypacs.services.qido.app import create_app

pytestmark = pytest.mark.unit

STUDY = "1.2.826.0.1.3680043.8.498.10000000000000000001"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return TestClient(create_app(Settings(data_dir=Path(tmp_path_factory.mktemp("qido")))))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    audit = logging.getLogger(AUDIT_LOGGER)
    saved = (list(root.handlers), root.level, list(audit.handlers), audit.propagate)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    audit.handlers[:] = saved[2]
    audit.propagate = saved[3]
    logging.getLogger(ACCESS_LOGGER).disabled = False


def metric_lines(client: TestClient, name: str) -> list[str]:
    text = client.get("/metrics").text
    return [line for line in text.splitlines() if line.startswith(name)]


def test_metrics_label_route_templates_not_uids(client: TestClient) -> None:
    reply = client.get(f"/dicom-web/studies/{STUDY}/series", params={"PatientName": "DOE^JANE"})
    lines = metric_lines(client, "skypacs_http_requests_total")
    assert any(
        'route="/dicom-web/studies/{study}/series"' in line
        and f'status="{reply.status_code}"' in line
        and 'service="qido"' in line
        and 'method="GET"' in line
        for line in lines
    )
    text = client.get("/metrics").text
    assert STUDY not in text
    assert "DOE" not in text


def test_unmatched_paths_share_one_label(client: TestClient) -> None:
    client.get(f"/no/such/{STUDY}")
    lines = metric_lines(client, "skypacs_http_requests_total")
    assert any('route="unmatched"' in line and 'status="404"' in line for line in lines)
    assert STUDY not in client.get("/metrics").text


def test_metrics_expose_duration_and_in_progress(client: TestClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").text
    assert "skypacs_http_request_duration_seconds_bucket" in text
    assert "skypacs_http_requests_in_progress" in text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_access_log_has_template_status_and_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        reply = client.get(
            f"/dicom-web/studies/{STUDY}/series",
            params={"PatientName": "DOE^JANE"},
            headers={"X-Request-ID": "acc-1"},
        )
    records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert records
    record = records[-1]
    assert record.__dict__["route"] == "/dicom-web/studies/{study}/series"
    assert record.__dict__["status"] == reply.status_code
    assert record.__dict__["method"] == "GET"
    assert record.__dict__["duration_ms"] >= 0
    rendered = JsonFormatter().format(record)
    assert STUDY not in rendered
    assert "DOE" not in rendered
    assert "PatientName" not in rendered


def test_json_formatter_fields() -> None:
    token = request_id_var.set("rid-7")
    try:
        record = logging.LogRecord(
            "skypacs.test", logging.WARNING, __file__, 1, "hi %s", ("x",), None
        )
        record.__dict__["instances"] = 3
        line = orjson.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hi x"
    assert line["level"] == "WARNING"
    assert line["logger"] == "skypacs.test"
    assert line["request_id"] == "rid-7"
    assert line["instances"] == 3
    assert line["time"].endswith("+00:00")


def test_json_formatter_includes_traceback() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = orjson.loads(JsonFormatter().format(record))
    assert "ValueError: bad" in line["exc"]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_writes_json_lines_and_keeps_audit_apart() -> None:
    stream = io.StringIO()
    configure_logging(LogSettings(level="INFO", json_format=True), stream)
    logging.getLogger("skypacs.anything").info("started", extra={"port": 8080})
    logging.getLogger("skypacs.anything").debug("hidden")
    logging.getLogger(AUDIT_LOGGER).info("read study", extra={"user": "alice"})
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["started", "read study"]
    assert lines[0]["port"] == 8080
    assert lines[1]["logger"] == AUDIT_LOGGER
    assert logging.getLogger(AUDIT_LOGGER).propagate is False


@pytest.mark.usefixtures("restore_logging")
def test_access_log_can_be_switched_off() -> None:
    stream = io.StringIO()
    configure_logging(LogSettings(access_log=False), stream)
    logging.getLogger(ACCESS_LOGGER).info("GET /x 200")
    assert stream.getvalue() == ""
