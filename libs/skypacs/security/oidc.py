"""OIDC bearer tokens: JWS signature and claims checked against the issuer's JWKS.

The JWKS is fetched without blocking the event loop (``httpx.AsyncClient`` for
https, a worker thread for ``file://``), cached, and fetched again when it ages
out or a token names an unknown key id (key rotation), at most once per
``jwks_min_refresh_interval_s``. Only asymmetric algorithms from the configured
list are accepted, so ``alg=none`` and HMAC-with-the-public-key tricks fail.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from skypacs.config import OidcSettings
from skypacs.errors import DependencyUnavailable

from .identity import Forbidden, Principal, Unauthorized
from .roles import Role

__all__ = ["JwksCache", "OidcVerifier", "check_jwks_url", "roles_from_claims"]

log = logging.getLogger(__name__)

KEYCLOAK_ROLES = "realm_access.roles"
_MAX_JWKS_BYTES = 1024 * 1024


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_jwks_url(url: str, *, allow_http_loopback: bool) -> None:
    """Accept https:// and file:// (and http:// on loopback when allowed)."""
    parts = urlsplit(url)
    if parts.scheme in ("https", "file"):
        return
    if parts.scheme == "http" and allow_http_loopback and _is_loopback(parts.hostname or ""):
        return
    raise ValueError(f"JWKS URL must be https:// or file:// (got {parts.scheme or 'no'} scheme)")


class JwksCache:
    """The issuer's key set, fetched lazily and refreshed on an unknown key id."""

    def __init__(self, settings: OidcSettings, client: httpx.AsyncClient) -> None:
        assert settings.jwks_url is not None
        check_jwks_url(settings.jwks_url, allow_http_loopback=settings.allow_http_loopback_jwks)
        self._settings = settings
        self._url = settings.jwks_url
        self._client = client
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _download(self) -> bytes:
        parts = urlsplit(self._url)
        if parts.scheme == "file":
            return await asyncio.to_thread(Path(unquote(parts.path)).read_bytes)
        response = await self._client.get(self._url, timeout=self._settings.jwks_timeout_s)
        response.raise_for_status()
        return response.content

    async def _refresh(self) -> None:
        self._attempted_at = time.monotonic()
        self.fetches += 1
        try:
            raw = await self._download()
            if len(raw) > _MAX_JWKS_BYTES:
                raise ValueError("JWKS document too large")
            keys = KeySet.import_key_set(orjson.loads(raw))
        except (OSError, httpx.HTTPError, ValueError, JoseError) as exc:
            log.warning("JWKS fetch failed: %s", type(exc).__name__)
            if self._keys is None:
                raise DependencyUnavailable("the identity provider's keys are unavailable") from exc
            return
        self._keys, self._fetched_at = keys, time.monotonic()

    def _may_refresh(self) -> bool:
        if self._attempted_at is None:
            return True
        return time.monotonic() - self._attempted_at >= self._settings.jwks_min_refresh_interval_s

    def _stale(self) -> bool:
        return time.monotonic() - self._fetched_at >= self._settings.jwks_cache_s

    @staticmethod
    def _has(keys: KeySet | None, kid: str | None) -> bool:
        if keys is None:
            return False
        try:
            keys.get_by_kid(kid)
        except JoseError:
            return False
        return True

    async def key_set(self, kid: str | None) -> KeySet:
        """The current key set, refreshed first if ``kid`` is unknown or it aged out."""
        if self._has(self._keys, kid) and not self._stale():
            assert self._keys is not None
            return self._keys
        async with self._lock:
            if not (self._has(self._keys, kid) and not self._stale()) and self._may_refresh():
                await self._refresh()
        if self._keys is None:
            raise DependencyUnavailable("the identity provider's keys are unavailable")
        return self._keys


def _claim(claims: dict[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _as_names(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return ()


def roles_from_claims(claims: dict[str, Any], roles_claim: str) -> Role | None:
    """The highest SkyPACS role named in ``roles_claim`` or Keycloak's realm roles."""
    found: list[Role] = []
    for path in dict.fromkeys((roles_claim, KEYCLOAK_ROLES)):
        for name in _as_names(_claim(claims, path)):
            label = name.lower().removeprefix("skypacs-").removeprefix("skypacs:")
            if label.upper() in Role.__members__:
                found.append(Role[label.upper()])
    return max(found, default=None)


class OidcVerifier:
    """Verify an OIDC access token and map it to a :class:`Principal`."""

    def __init__(self, settings: OidcSettings, keys: JwksCache) -> None:
        assert settings.issuer
        assert settings.audience
        self._settings = settings
        self._keys = keys
        self._registry = jwt.JWTClaimsRegistry(
            leeway=settings.leeway_s,
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "value": settings.audience},
            exp={"essential": True},
        )

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header = dict(jws.extract_compact(token.encode("ascii")).headers())
        except (JoseError, ValueError, UnicodeError):
            raise Unauthorized("malformed bearer token") from None
        if header.get("alg") not in self._settings.algorithms:
            raise Unauthorized("token signature algorithm not accepted")
        return header

    async def verify(self, token: str) -> Principal:
        """Signature, issuer, audience, expiry and not-before; then the role."""
        header = self._header(token)
        kid = header.get("kid")
        keys = await self._keys.key_set(kid if isinstance(kid, str) else None)
        try:
            key = keys.get_by_kid(kid if isinstance(kid, str) else None)
            decoded = jwt.decode(token, key, algorithms=[str(header["alg"])])
            self._registry.validate(decoded.claims)
        except JoseError as exc:
            raise Unauthorized(f"token rejected: {exc.error}") from None
        claims = decoded.claims
        subject = claims.get("sub") or claims.get("preferred_username")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("token has no subject")
        role = roles_from_claims(claims, self._settings.roles_claim)
        if role is None:
            raise Forbidden("the token grants no SkyPACS role (reader, writer or admin)")
        return Principal(subject=subject, role=role, method="oidc")
