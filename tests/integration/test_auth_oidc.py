"""OIDC bearer tokens against a real server and a JWKS served over HTTP on loopback.

Tokens are signed with real RS256 and ES256 keys; the server fetches their public
halves from the local JWKS endpoint. Each role gets exactly its rights on every
route of the all-in-one app, and every kind of bad token gets 401.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from skypacs.services.serve import create_app
from tests.integration.auth_helpers import (
    Archive,
    Issuer,
    all_routes,
    archive_settings,
    bearer,
    jwks_server,
    oidc_env,
    running_archive,
    unsigned_token,
)

pytestmark = pytest.mark.integration

SAMPLE_PARAMS = {
    "study": "1.2.826.0.1.3680043.8.498.1",
    "series": "1.2.826.0.1.3680043.8.498.2",
    "instance": "1.2.826.0.1.3680043.8.498.3",
    "frames": "1",
    "tag_path": "7FE00010",
}
OPEN = {"/healthz", "/readyz"}


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def jwks_url(issuer: Issuer) -> Iterator[str]:
    with jwks_server(issuer) as url:
        yield url


@pytest.fixture
async def archive(pg_dsn: str, tmp_path: Path, jwks_url: str) -> AsyncIterator[Archive]:
    settings = archive_settings(pg_dsn, tmp_path / "var", auth={"oidc": oidc_env(jwks_url)})
    async with running_archive(settings) as running:
        yield running


def route_table(tmp_path: Path) -> list[tuple[str, str]]:
    """Every (method, concrete path) of the all-in-one app, probes excluded."""
    app = create_app(archive_settings("postgresql://unused/db", tmp_path))
    found = []
    for template, methods in all_routes(app.routes):
        if template not in OPEN:
            path = re.sub(r"{(\w+)(?::\w+)?}", lambda m: SAMPLE_PARAMS[m[1]], template)
            found.extend((method, path) for method in sorted(methods))
    return found


def expected_allowed(role: str, method: str, path: str) -> bool:
    if path == "/metrics":
        return role == "admin"
    if method in ("GET", "HEAD"):
        return True
    if method == "POST":
        return role in ("writer", "admin")
    return role == "admin"


@pytest.mark.parametrize("role", ["reader", "writer", "admin"])
async def test_each_role_gets_exactly_its_rights_on_every_route(
    archive: Archive, issuer: Issuer, role: str, tmp_path: Path
) -> None:
    token = issuer.token("RS256", sub=f"{role}-user", roles=[role])
    table = route_table(tmp_path)
    assert ("POST", "/dicom-web/studies") in table
    assert ("DELETE", f"/dicom-web/studies/{SAMPLE_PARAMS['study']}") in table
    wrong = []
    for method, path in table:
        response = await archive.client.request(method, archive.url + path, headers=bearer(token))
        allowed = response.status_code not in (401, 403)
        if response.status_code == 401 or allowed != expected_allowed(role, method, path):
            wrong.append((method, path, response.status_code))
        assert response.status_code < 500 or response.status_code in (501, 503), (method, path)
    assert wrong == []


async def test_es256_tokens_are_accepted(archive: Archive, issuer: Issuer) -> None:
    response = await archive.client.get(
        archive.dicomweb("/studies"), headers=bearer(issuer.token("ES256"))
    )
    assert response.status_code == 200
    assert response.json() == []


async def test_keycloak_realm_roles_are_read(archive: Archive, issuer: Issuer) -> None:
    token = issuer.token(roles=None, realm_access={"roles": ["offline_access", "writer"]})
    response = await archive.client.post(
        archive.dicomweb("/studies"), headers={**bearer(token), "Content-Type": "text/plain"}
    )
    assert response.status_code == 415  # past authorization: the body is what is wrong
    delete = await archive.client.delete(
        archive.dicomweb(f"/studies/{SAMPLE_PARAMS['study']}"), headers=bearer(token)
    )
    assert delete.status_code == 403


async def test_a_token_without_a_skypacs_role_is_forbidden(
    archive: Archive, issuer: Issuer
) -> None:
    token = issuer.token(roles=["offline_access"])
    response = await archive.client.get(archive.dicomweb("/studies"), headers=bearer(token))
    assert response.status_code == 403


def _bad_tokens(issuer: Issuer) -> dict[str, str]:
    now = int(time.time())
    stranger = Issuer()
    forged = stranger.token("RS256", roles=["admin"])  # signed by another key, same kid
    return {
        "expired": issuer.token(exp=now - 3600, iat=now - 7200, nbf=now - 7200),
        "not yet valid": issuer.token(nbf=now + 3600),
        "wrong issuer": issuer.token(iss="https://evil.example.test/"),
        "wrong audience": issuer.token(aud="another-service"),
        "no expiry": issuer.token(exp=None),
        "wrong signature": forged,
        "alg none": unsigned_token(),
        "tampered claims": _tampered(issuer.token(roles=["reader"])),
        "garbage": "not-a-token",
        "unknown api key": "skp_000000000000_" + "A" * 43,
    }


def _tampered(token: str) -> str:
    header, _claims, signature = token.split(".")
    _, claims, _ = unsigned_token(sub="user-1").split(".")
    return f"{header}.{claims}.{signature}"


async def test_bad_tokens_get_401_with_a_bearer_challenge(archive: Archive, issuer: Issuer) -> None:
    for name, token in _bad_tokens(issuer).items():
        response = await archive.client.get(archive.dicomweb("/studies"), headers=bearer(token))
        assert response.status_code == 401, name
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="skypacs"'), name
        assert 'error="invalid_token"' in challenge, name


async def test_missing_credentials_get_a_plain_challenge(archive: Archive) -> None:
    response = await archive.client.get(archive.dicomweb("/studies"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="skypacs"'
    basic = await archive.client.get(
        archive.dicomweb("/studies"), headers={"Authorization": "Basic dXNlcjpwdw=="}
    )
    assert basic.status_code == 401
    assert 'error="invalid_request"' in basic.headers["www-authenticate"]


async def test_probes_stay_open(archive: Archive) -> None:
    assert (await archive.client.get(archive.url + "/healthz")).status_code == 200
    assert (await archive.client.get(archive.url + "/readyz")).status_code == 200


async def test_a_rotated_key_is_fetched_on_its_unknown_kid(
    archive: Archive, issuer: Issuer
) -> None:
    before = await archive.client.get(archive.dicomweb("/studies"), headers=bearer(issuer.token()))
    assert before.status_code == 200
    fetched = issuer.requests
    issuer.rotate("RS256", "rsa-rotated")
    response = await archive.client.get(
        archive.dicomweb("/studies"), headers=bearer(issuer.token("RS256"))
    )
    assert response.status_code == 200
    assert issuer.requests == fetched + 1
