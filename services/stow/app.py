"""The STOW-RS service app: the route table behind the shared HTTP edge."""

from __future__ import annotations

from fastapi import FastAPI

from skypacs.config import Settings
from skypacs.http import create_app as create_http_app
from skypacs.runtime import open_service_runtime

from .routes import router

SERVICE = "stow"


def create_app(settings: Settings) -> FastAPI:
    """The STOW-RS app for ``settings`` (standalone: no migration, no relay)."""
    return create_http_app(
        title="SkyPACS STOW-RS",
        settings=settings,
        routers=[router],
        runtime_factory=open_service_runtime,
        service=SERVICE,
    )
