"""The pure rules of the security baseline: roles, listen policy, request hygiene."""

from __future__ import annotations

import pytest

from skypacs.config import Settings
from skypacs.security import Role, listen_refusal, parse_role, required_role
from skypacs.security.audit import audit_action
from skypacs.security.limits import header_bytes, valid_query_string
from skypacs.security.middleware import uids_in_path
from skypacs.security.oidc import check_jwks_url, roles_from_claims

pytestmark = pytest.mark.unit

OIDC = {"issuer": "https://idp/", "audience": "pacs", "jwks_url": "https://idp/certs"}


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/dicom-web/studies", Role.READER),
        ("HEAD", "/dicom-web/studies/1.2/metadata", Role.READER),
        ("POST", "/dicom-web/studies", Role.WRITER),
        ("POST", "/dicom-web/studies/1.2", Role.WRITER),
        ("DELETE", "/dicom-web/studies/1.2", Role.ADMIN),
        ("GET", "/admin/keys", Role.ADMIN),
        ("GET", "/ops", Role.ADMIN),
        ("PROPFIND", "/dicom-web/studies", Role.ADMIN),
        ("GET", "/metrics", Role.ADMIN),
        ("GET", "/openapi.json", Role.READER),
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
    ],
)
def test_required_role_from_method_and_path(method: str, path: str, role: Role | None) -> None:
    assert required_role(method, path) == role


def test_metrics_can_be_opened() -> None:
    assert required_role("GET", "/metrics", open_metrics=True) is None


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.READER < Role.WRITER < Role.ADMIN
    assert parse_role(" Writer ") is Role.WRITER
    with pytest.raises(ValueError, match="unknown role"):
        parse_role("root")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_listeners_need_no_auth(host: str) -> None:
    assert listen_refusal(Settings(), host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "pacs.example.org"])
def test_public_listeners_need_auth_or_an_explicit_opt_out(host: str) -> None:
    message = listen_refusal(Settings(), host)
    assert message is not None
    assert "SKYPACS_AUTH__ALLOW_ANONYMOUS=true" in message
    assert listen_refusal(Settings(auth={"allow_anonymous": True}), host) is None
    assert listen_refusal(Settings(auth={"required": True}), host) is None
    assert listen_refusal(Settings(auth={"oidc": OIDC}), host) is None


def test_oidc_settings_must_be_complete_and_asymmetric() -> None:
    with pytest.raises(ValueError, match="together"):
        Settings(auth={"oidc": {"issuer": "https://idp/"}})
    with pytest.raises(ValueError, match="asymmetric"):
        Settings(auth={"oidc": {**OIDC, "algorithms": ["RS256", "none"]}})
    with pytest.raises(ValueError, match="asymmetric"):
        Settings(auth={"oidc": {**OIDC, "algorithms": ["HS256"]}})
    assert Settings(auth={"oidc": OIDC}).auth.enforced


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://idp.example/certs", True),
        ("file:///etc/skypacs/jwks.json", True),
        ("http://idp.example/certs", False),
        ("http://127.0.0.1:8080/certs", False),
        ("ftp://idp.example/certs", False),
    ],
)
def test_jwks_urls_are_https_or_file(url: str, allowed: bool) -> None:
    if allowed:
        check_jwks_url(url, allow_http_loopback=False)
    else:
        with pytest.raises(ValueError, match="https"):
            check_jwks_url(url, allow_http_loopback=False)


def test_http_jwks_only_on_loopback_when_allowed() -> None:
    check_jwks_url("http://127.0.0.1:8080/certs", allow_http_loopback=True)
    with pytest.raises(ValueError):
        check_jwks_url("http://idp.example/certs", allow_http_loopback=True)


@pytest.mark.parametrize(
    ("claims", "role"),
    [
        ({"roles": ["reader"]}, Role.READER),
        ({"roles": ["reader", "admin"]}, Role.ADMIN),
        ({"roles": "writer reader"}, Role.WRITER),
        ({"realm_access": {"roles": ["offline_access", "writer"]}}, Role.WRITER),
        ({"roles": ["skypacs-admin"]}, Role.ADMIN),
        ({"roles": ["offline_access"]}, None),
        ({"roles": [1, None]}, None),
        ({}, None),
    ],
)
def test_roles_from_claims(claims: dict[str, object], role: Role | None) -> None:
    assert roles_from_claims(claims, "roles") == role


def test_roles_from_a_nested_claim() -> None:
    claims = {"resource_access": {"pacs": {"roles": ["writer"]}}}
    assert roles_from_claims(claims, "resource_access.pacs.roles") == Role.WRITER


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        (b"PatientName=M%C3%BCller", True),
        (b"PatientName=*smith*&limit=10", True),
        (b"PatientName=%FF%FE", False),
        (b"Modality=%C3%28", False),
        (b"PatientID=\xff", False),
        (b"", True),
    ],
)
def test_query_strings_must_decode_as_utf8(raw: bytes, valid: bool) -> None:
    assert valid_query_string(raw) is valid


def test_header_bytes_counts_names_values_and_separators() -> None:
    assert header_bytes({"headers": [(b"host", b"a"), (b"x", b"yz")]}) == 5 + 4 + 3 + 4


@pytest.mark.parametrize(
    ("method", "route", "action"),
    [
        ("GET", "/dicom-web/studies", "search"),
        ("GET", "/dicom-web/studies/{study}/series", "search"),
        ("GET", "/dicom-web/studies/{study}/series/{series}/instances", "search"),
        ("GET", "/dicom-web/studies/{study}", "retrieve"),
        ("GET", "/dicom-web/studies/{study}/metadata", "retrieve"),
        ("POST", "/dicom-web/studies", "store"),
        ("DELETE", "/dicom-web/studies/{study}", "delete"),
    ],
)
def test_audit_actions(method: str, route: str, action: str) -> None:
    assert audit_action(method, route) == action


def test_uids_of_unrouted_paths() -> None:
    path = "/dicom-web/studies/1.2/series/3.4/instances/5.6/frames/1"
    assert uids_in_path(path) == {"study": "1.2", "series": "3.4", "instance": "5.6"}
    assert uids_in_path("/dicom-web/studies/../../etc") == {}
    assert uids_in_path("/dicom-web/studies/" + "1" * 65) == {}
