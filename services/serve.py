"""The all-in-one app behind ``skypacs serve``: every service, one runtime.

This is the composition root, the one place that combines the service route
tables. The index is migrated on start and the outbox relay runs in-process.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from skypacs.config import Settings
from skypacs.http import create_app as create_http_app
from skypacs.runtime import Runtime, open_runtime

from .qido.routes import router as qido_router
from .stow.routes import router as stow_router
from .wado.routes import router as wado_router

SERVICE = "serve"


def open_serve_runtime(settings: Settings) -> AbstractAsyncContextManager[Runtime]:
    """Backends for the single process: migrate the schema, run the relay."""
    return open_runtime(settings, migrate=True, relay=True)


def create_app(settings: Settings) -> FastAPI:
    """STOW-RS, QIDO-RS and WADO in one app over one runtime."""
    return create_http_app(
        title="SkyPACS",
        settings=settings,
        routers=[stow_router, qido_router, wado_router],
        runtime_factory=open_serve_runtime,
        service=SERVICE,
    )
