"""Turn a request's credentials into a :class:`Principal`.

``Authorization: Bearer skp_…`` is an API key (checked against the index);
any other bearer token is an OIDC access token. Without credentials a request
runs as the anonymous principal only when authentication is not enforced and
either ``allow_anonymous`` is set or the request shows no sign of a remote peer
(no non-loopback client address, no proxy forwarding headers), which keeps the
embedded default usable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import asyncpg
from starlette.types import Scope

from skypacs.config import AuthSettings
from skypacs.errors import DependencyUnavailable

from .api_keys import looks_like_api_key, verify_api_key
from .identity import Principal, Unauthorized
from .oidc import OidcVerifier
from .roles import parse_role

__all__ = ["ANONYMOUS", "Authenticator", "is_loopback_address"]

ANONYMOUS = "anonymous"
PoolSource = Callable[[], asyncpg.Pool | None]
_FORWARDING = (b"forwarded", b"x-forwarded-for", b"x-real-ip")


def is_loopback_address(host: str | None) -> bool:
    """``127.0.0.0/8``, ``::1`` or ``localhost``."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _remote_ip(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _local_client(scope: Scope) -> bool:
    """No sign of a remote peer: not a non-loopback IP, not relayed by a proxy.

    A Unix socket (no client address) or an in-process test client counts as local.
    """
    client = scope.get("client")
    if client and _remote_ip(str(client[0])):
        return False
    return not any(key.lower() in _FORWARDING for key, _ in scope.get("headers", ()))


class Authenticator:
    """API keys, OIDC tokens and the anonymous fallback, per the auth settings."""

    def __init__(
        self, settings: AuthSettings, pool_source: PoolSource, oidc: OidcVerifier | None
    ) -> None:
        self._settings = settings
        self._pool_source = pool_source
        self._oidc = oidc
        self._anonymous = Principal(ANONYMOUS, parse_role(settings.anonymous_role), "anonymous")

    def anonymous_allowed(self, scope: Scope) -> bool:
        if self._settings.enforced:
            return False
        return self._settings.allow_anonymous or _local_client(scope)

    async def authenticate(self, scope: Scope) -> Principal:
        """The caller; :class:`Unauthorized` when credentials are missing or bad."""
        header = _header(scope, b"authorization")
        if header is None:
            if self.anonymous_allowed(scope):
                return self._anonymous
            raise Unauthorized("credentials required: send Authorization: Bearer", error=None)
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("use Authorization: Bearer <token>", error="invalid_request")
        if looks_like_api_key(token):
            return await self._api_key(token)
        if self._oidc is None:
            raise Unauthorized("this server accepts API keys only (no OIDC issuer configured)")
        return await self._oidc.verify(token)

    async def _api_key(self, token: str) -> Principal:
        pool = self._pool_source()
        if pool is None:
            raise DependencyUnavailable("the service is starting or stopping")
        async with pool.acquire() as conn:
            return await verify_api_key(conn, token)
