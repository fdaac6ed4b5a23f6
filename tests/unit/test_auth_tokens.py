"""OIDC token verification against a ``file://`` JWKS (the air-gapped set-up)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from skypacs.config import OidcSettings
from skypacs.security import Forbidden, Role, Unauthorized
from skypacs.security.oidc import JwksCache, OidcVerifier
from tests.integration.auth_helpers import AUDIENCE, ISSUER, Issuer, unsigned_token

pytestmark = pytest.mark.unit


def verifier_for(issuer: Issuer, tmp_path: Path, **extra: object) -> tuple[OidcVerifier, JwksCache]:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    settings = OidcSettings(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=path.as_uri(),
        **extra,  # type: ignore[arg-type]
    )
    cache = JwksCache(settings, httpx.AsyncClient())
    return OidcVerifier(settings, cache), cache


async def test_valid_tokens_of_both_algorithms(tmp_path: Path) -> None:
    issuer = Issuer()
    verifier, _ = verifier_for(issuer, tmp_path)
    for alg in ("RS256", "ES256"):
        principal = await verifier.verify(issuer.token(alg, sub="dr-who", roles=["writer"]))
        assert (principal.subject, principal.role, principal.method) == (
            "dr-who", Role.WRITER, "oidc",
        )  # fmt: skip


async def test_leeway_tolerates_small_clock_skew(tmp_path: Path) -> None:
    issuer = Issuer()
    verifier, _ = verifier_for(issuer, tmp_path, leeway_s=60)
    now = int(time.time())
    assert (await verifier.verify(issuer.token(exp=now - 10))).role == Role.READER
    with pytest.raises(Unauthorized):
        await verifier.verify(issuer.token(exp=now - 120))


async def test_symmetric_and_unsigned_tokens_are_refused(tmp_path: Path) -> None:
    issuer = Issuer()
    verifier, _ = verifier_for(issuer, tmp_path)
    secret = OctKey.import_key(b"k" * 32)
    hs256 = jwt.encode({"alg": "HS256", "kid": "rsa-1"}, {"iss": ISSUER, "aud": AUDIENCE}, secret)
    for token in (hs256, unsigned_token(), "a.b", ""):
        with pytest.raises(Unauthorized):
            await verifier.verify(token)


async def test_no_role_is_forbidden(tmp_path: Path) -> None:
    issuer = Issuer()
    verifier, _ = verifier_for(issuer, tmp_path)
    with pytest.raises(Forbidden):
        await verifier.verify(issuer.token(roles=["uma_authorization"]))


async def test_unknown_kids_refresh_at_most_once_per_interval(tmp_path: Path) -> None:
    issuer = Issuer()
    verifier, cache = verifier_for(issuer, tmp_path, jwks_min_refresh_interval_s=3600)
    await verifier.verify(issuer.token())
    assert cache.fetches == 1
    stranger = Issuer()
    stranger.rotate("RS256", "unknown-kid")
    for _ in range(5):
        with pytest.raises(Unauthorized):
            await verifier.verify(stranger.token())
    assert cache.fetches == 1  # an attacker cycling kids cannot make us hammer the IdP
