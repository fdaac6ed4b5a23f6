"""Public base URL and resource URL helpers."""

from __future__ import annotations

import pytest

from skypacs.dicomweb.urls import (
    dicomweb_root,
    frames_url,
    instance_url,
    public_base_url,
    series_url,
    study_url,
    valid_host,
)
from skypacs.errors import BadRequest, InvalidUID

pytestmark = pytest.mark.unit


def base(headers: dict[str, str], *, root_path: str = "", trust: bool = True) -> str:
    return public_base_url("http", "skypacs-wado:8080", headers, root_path, None, trust)


def test_request_values_without_proxy_headers() -> None:
    assert base({}) == "http://skypacs-wado:8080"
    assert base({}, root_path="/pacs/") == "http://skypacs-wado:8080/pacs"


def test_configured_base_wins_over_everything() -> None:
    headers = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    url = public_base_url("http", "internal", headers, "/x", "https://pacs.example.org/", True)
    assert url == "https://pacs.example.org"


def test_x_forwarded_headers_behind_an_ingress() -> None:
    headers = {
        "x-forwarded-proto": "https",
        "x-forwarded-host": "pacs.example.org, internal-lb:80",
        "x-forwarded-prefix": "/archive/",
    }
    assert base(headers, root_path="/ignored") == "https://pacs.example.org/archive"


def test_header_names_are_case_insensitive() -> None:
    headers = {"X-Forwarded-Proto": "HTTPS", "X-FORWARDED-HOST": "pacs.example.org"}
    assert base(headers) == "https://pacs.example.org"


def test_forwarded_port() -> None:
    assert base({"X-Forwarded-Host": "pacs.example.org", "X-Forwarded-Port": "8443"}) == (
        "http://pacs.example.org:8443"
    )
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}
    assert base(headers) == "https://skypacs-wado"
    assert base({"X-Forwarded-Port": "99999"}) == "http://skypacs-wado:8080"


def test_rfc7239_forwarded() -> None:
    headers = {"Forwarded": 'for=192.0.2.60;proto=https;host="pacs.example.org:8443", for=10.0.0.1'}
    assert base(headers) == "https://pacs.example.org:8443"
    assert base({"Forwarded": "host=[2001:db8::1]:8443;proto=http"}) == "http://[2001:db8::1]:8443"


def test_x_forwarded_wins_over_forwarded() -> None:
    headers = {"Forwarded": "proto=http;host=a.example", "X-Forwarded-Host": "b.example"}
    assert base(headers) == "http://b.example"


def test_forwarded_headers_ignored_when_not_trusted() -> None:
    headers = {"X-Forwarded-Host": "pacs.example.org", "X-Forwarded-Proto": "https"}
    assert base(headers, trust=False) == "http://skypacs-wado:8080"


@pytest.mark.parametrize(
    "bad_host",
    [
        "evil.example/path",
        "evil example",
        "evil.example:port",
        "",
        "a@b",
        "host:70000",
        "ex\u00e4mple",
    ],
)
def test_malformed_forwarded_hosts_are_ignored(bad_host: str) -> None:
    assert base({"X-Forwarded-Host": bad_host}) == "http://skypacs-wado:8080"


def test_malformed_forwarded_proto_and_prefix_are_ignored() -> None:
    headers = {"X-Forwarded-Proto": "javascript", "X-Forwarded-Prefix": "/a b"}
    assert base(headers, root_path="/pacs") == "http://skypacs-wado:8080/pacs"


def test_invalid_request_host_is_bad_request() -> None:
    with pytest.raises(BadRequest):
        public_base_url("http", "bad host/", {}, "", None, True)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8080", "[::1]:8042", "skypacs_wado:80"])
def test_valid_hosts(host: str) -> None:
    assert valid_host(host)


def test_resource_urls() -> None:
    root = dicomweb_root("https://pacs.example.org/", "/dicom-web/")
    assert root == "https://pacs.example.org/dicom-web"
    assert dicomweb_root("https://pacs.example.org", "") == "https://pacs.example.org"
    assert study_url(root, "1.2.3") == "https://pacs.example.org/dicom-web/studies/1.2.3"
    assert series_url(root, "1.2.3", "1.2.4") == (
        "https://pacs.example.org/dicom-web/studies/1.2.3/series/1.2.4"
    )
    assert instance_url(root, "1.2.3", "1.2.4", "1.2.5") == (
        "https://pacs.example.org/dicom-web/studies/1.2.3/series/1.2.4/instances/1.2.5"
    )
    assert frames_url(root, "1.2.3", "1.2.4", "1.2.5", [1, 3]).endswith(
        "/instances/1.2.5/frames/1,3"
    )


@pytest.mark.parametrize("uid", ["", "1..2", "../etc", "1.2.3/x", "1." + "2" * 63, "1.2.a"])
def test_resource_urls_refuse_invalid_uids(uid: str) -> None:
    with pytest.raises(InvalidUID):
        study_url("http://h", uid)
    with pytest.raises(InvalidUID):
        instance_url("http://h", "1.2", "1.3", uid)


def test_frame_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        frames_url("http://h", "1.2", "1.3", "1.4", [0])
