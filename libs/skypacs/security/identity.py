"""Who a request acts as, and the two ways authentication ends a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from skypacs.errors import SkypacsError

from .roles import Role

__all__ = ["AuthMethod", "Forbidden", "Principal", "Unauthorized", "challenge"]

AuthMethod = Literal["oidc", "apikey", "anonymous"]
REALM = "skypacs"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller (or the anonymous one) and its role."""

    subject: str
    role: Role
    method: AuthMethod
    key_name: str | None = None

    def may(self, needed: Role) -> bool:
        return self.role >= needed


def challenge(error: str | None = None, description: str | None = None) -> str:
    """A ``WWW-Authenticate`` value for bearer tokens (RFC 6750 §3)."""
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        safe = description.replace("\\", "").replace('"', "'")
        parts.append(f'error_description="{safe}"')
    return "Bearer " + ", ".join(parts)


class Unauthorized(SkypacsError):
    """Missing or unacceptable credentials: 401 with a bearer challenge."""

    status_code = 401
    title = "unauthorized"

    def __init__(self, detail: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(detail)
        self.challenge = challenge(error, detail if error else None)


class Forbidden(SkypacsError):
    """Valid credentials whose role does not allow the request: 403."""

    status_code = 403
    title = "forbidden"
