"""The servable apps by command name: ``serve`` (everything) and each service alone.

Imports are deferred so that a command loads only the service it runs. The
supervisor of several workers (see :mod:`services.supervisor`) loads the
module once, before it forks them, so they share its pages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from skypacs.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

AppFactory = Callable[[Settings], "FastAPI"]


@dataclass(frozen=True)
class ServedApp:
    """A command's app: the module holding its ``create_app``, and its help line."""

    module: str
    help: str

    def factory(self) -> AppFactory:
        """The app factory (imports the module, once per process)."""
        loaded = importlib.import_module(self.module, __package__)
        return cast(AppFactory, loaded.create_app)


APPS: dict[str, ServedApp] = {
    "serve": ServedApp(".serve", "run every service in one process (embedded defaults)"),
    "stow": ServedApp(".stow.app", "run the STOW-RS service"),
    "qido": ServedApp(".qido.app", "run the QIDO-RS service"),
    "wado": ServedApp(".wado.app", "run the WADO-RS / WADO-URI service"),
}
