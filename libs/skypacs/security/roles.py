"""Roles and the one rule that says which role a request needs.

The rule reads only the method and the path, so every route of every app, those
that exist and those added later, is covered without touching route tables:
``GET``/``HEAD`` read, ``POST``/``PUT``/``PATCH`` write (STOW-RS), ``DELETE`` and
administration paths need ``admin``. The health probes stay open; ``/metrics``
needs ``admin`` unless ``SKYPACS_AUTH__OPEN_METRICS=true``.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ADMIN_PREFIXES", "OPEN_PATHS", "Role", "parse_role", "required_role"]

#: Liveness and readiness answer without credentials (orchestrators probe them).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
METRICS_PATH = "/metrics"
#: Operations endpoints: whatever lives here needs ``admin`` whatever the method.
ADMIN_PREFIXES = ("/admin/", "/ops/")


class Role(IntEnum):
    """Each role includes the rights of the ones below it."""

    READER = 1
    WRITER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


def parse_role(value: str) -> Role:
    """``reader``, ``writer`` or ``admin`` (any case); ValueError otherwise."""
    try:
        return Role[value.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown role {value!r}: use reader, writer or admin") from None


def required_role(method: str, path: str, *, open_metrics: bool = False) -> Role | None:
    """The least role that may make this request; ``None`` for open paths."""
    if path in OPEN_PATHS:
        return None
    if path == METRICS_PATH:
        return None if open_metrics else Role.ADMIN
    if any(path.startswith(prefix) or path == prefix[:-1] for prefix in ADMIN_PREFIXES):
        return Role.ADMIN
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        return Role.READER
    if verb in ("POST", "PUT", "PATCH"):
        return Role.WRITER
    return Role.ADMIN
