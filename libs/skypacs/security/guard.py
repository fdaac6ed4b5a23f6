"""The security pieces of one app: authenticator, audit trail, and their lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import httpx
from starlette.middleware import Middleware

from skypacs.config import Settings

from .audit import AuditTrail
from .authenticator import Authenticator
from .limits import RequestLimitsMiddleware
from .middleware import SecurityMiddleware
from .oidc import JwksCache, OidcVerifier

__all__ = ["SecurityGuard"]

log = logging.getLogger(__name__)

PoolSource = Callable[[], asyncpg.Pool | None]


@dataclass
class SecurityGuard:
    """Built with the app (no I/O); :meth:`aclose` flushes and closes on shutdown."""

    settings: Settings
    authenticator: Authenticator
    trail: AuditTrail
    jwks: JwksCache | None
    client: httpx.AsyncClient | None

    @classmethod
    def build(cls, settings: Settings, pool_source: PoolSource) -> SecurityGuard:
        """Wire the pieces from settings; ``pool_source`` returns the index pool."""
        auth = settings.auth
        client = jwks = verifier = None
        if auth.oidc.configured:
            client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
            jwks = JwksCache(auth.oidc, client)
            verifier = OidcVerifier(auth.oidc, jwks)
        trail = AuditTrail(
            pool_source,
            queue_size=auth.audit_queue_size,
            batch_size=auth.audit_batch_size,
            linger_s=auth.audit_linger_s,
        )
        authenticator = Authenticator(auth, pool_source, verifier)
        return cls(settings, authenticator, trail, jwks, client)

    def middlewares(self) -> list[Middleware]:
        """Limits outside, then authentication, authorization and audit."""
        http = self.settings.http
        return [
            Middleware(
                RequestLimitsMiddleware,
                max_header_bytes=http.max_header_bytes,
                timeout_s=http.request_timeout_s,
            ),
            Middleware(
                SecurityMiddleware,
                authenticator=self.authenticator,
                trail=self.trail,
                audited_prefix=http.dicomweb_prefix,
                open_metrics=self.settings.auth.open_metrics,
                trust_forwarded=http.trust_forwarded_headers,
            ),
        ]

    def announce(self) -> None:
        """Say at every start how requests are authenticated."""
        auth = self.settings.auth
        if auth.enforced:
            kinds = "OIDC tokens and API keys" if auth.oidc.configured else "API keys"
            log.info("authentication required: %s", kinds)
        elif auth.allow_anonymous:
            log.warning(
                "SKYPACS_AUTH__ALLOW_ANONYMOUS=true: requests without credentials run as "
                "anonymous %s from any address",
                auth.anonymous_role,
            )
        else:
            log.info("no authentication configured: loopback clients run as anonymous")

    async def aclose(self) -> None:
        await self.trail.aclose()
        if self.client is not None:
            await self.client.aclose()
