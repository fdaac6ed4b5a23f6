"""The WADO service app: the route table behind the shared HTTP edge."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from skypacs.config import Settings
from skypacs.http import create_app as create_http_app
from skypacs.runtime import Runtime, open_runtime

from .routes import router

SERVICE = "wado"


def open_service_runtime(settings: Settings) -> AbstractAsyncContextManager[Runtime]:
    """Backends for a standalone wado process.

    The schema is migrated only when ``SKYPACS_INDEX__MIGRATE_ON_START`` says so
    (otherwise ``skypacs migrate`` does it); the outbox relay runs elsewhere.
    """
    return open_runtime(settings, migrate=settings.index.migrate_on_start, relay=False)


def create_app(settings: Settings) -> FastAPI:
    """The WADO app for ``settings``."""
    return create_http_app(
        title="SkyPACS WADO",
        settings=settings,
        routers=[router],
        runtime_factory=open_service_runtime,
        service=SERVICE,
    )
