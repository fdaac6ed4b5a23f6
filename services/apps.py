"""The servable apps by command name: ``serve`` (everything) and each service alone.

Imports are deferred so that a command loads only the service it runs; worker
processes (see :mod:`skypacs.services.supervisor`) build their app from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from skypacs.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

AppFactory = Callable[[Settings], "FastAPI"]


def serve_app(settings: Settings) -> FastAPI:
    from .serve import create_app

    return create_app(settings)


def stow_app(settings: Settings) -> FastAPI:
    from .stow.app import create_app

    return create_app(settings)


def qido_app(settings: Settings) -> FastAPI:
    from .qido.app import create_app

    return create_app(settings)


def wado_app(settings: Settings) -> FastAPI:
    from .wado.app import create_app

    return create_app(settings)


APPS: dict[str, tuple[AppFactory, str]] = {
    "serve": (serve_app, "run every service in one process (embedded defaults)"),
    "stow": (stow_app, "run the STOW-RS service"),
    "qido": (qido_app, "run the QIDO-RS service"),
    "wado": (wado_app, "run the WADO-RS / WADO-URI service"),
}
