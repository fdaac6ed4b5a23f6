"""Deny by default: which listen addresses need authentication configured."""

from __future__ import annotations

from skypacs.config import Settings

from .authenticator import is_loopback_address

__all__ = ["listen_refusal"]


def listen_refusal(settings: Settings, host: str) -> str | None:
    """Why a listener on ``host`` must not start with these settings (None: it may).

    A non-loopback address needs authentication (OIDC settings, or
    ``SKYPACS_AUTH__REQUIRED=true`` for API keys) or an explicit
    ``SKYPACS_AUTH__ALLOW_ANONYMOUS=true``.
    """
    auth = settings.auth
    if is_loopback_address(host) or auth.enforced or auth.allow_anonymous:
        return None
    return (
        f"refusing to listen on {host} without authentication. Configure OIDC "
        "(SKYPACS_AUTH__OIDC__ISSUER, SKYPACS_AUTH__OIDC__AUDIENCE, SKYPACS_AUTH__OIDC__JWKS_URL) "
        "or API keys (SKYPACS_AUTH__REQUIRED=true and `skypacs apikey create`), or set "
        "SKYPACS_AUTH__ALLOW_ANONYMOUS=true to serve patient data without authentication, "
        "or listen on 127.0.0.1"
    )
