"""The public DICOMweb root as clients see it (RetrieveURL, BulkDataURI)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from skypacs.config import Settings
from skypacs.http import public_root

pytestmark = pytest.mark.unit


def _request(
    host: str | None, server: tuple[str, int], headers: dict[str, str] | None = None
) -> Request:
    raw = [(b"host", host.encode())] if host is not None else []
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "scheme": "http",
        "method": "GET",
        "path": "/dicom-web/studies",
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "server": server,
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("host", "server", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080), "http://127.0.0.1:8080/dicom-web"),
        # dicomweb-client drops the port from Host: restore it from the socket.
        ("127.0.0.1", ("127.0.0.1", 8080), "http://127.0.0.1:8080/dicom-web"),
        ("localhost", ("127.0.0.1", 8080), "http://localhost:8080/dicom-web"),
        # A name that is not the socket's address came through a proxy: keep it.
        ("pacs.example.org", ("10.0.0.5", 8080), "http://pacs.example.org/dicom-web"),
        ("127.0.0.1", ("127.0.0.1", 80), "http://127.0.0.1/dicom-web"),
    ],
)
def test_host_and_port(host: str, server: tuple[str, int], expected: str) -> None:
    assert public_root(_request(host, server), Settings()) == expected


def test_forwarded_headers_win() -> None:
    request = _request(
        "10.0.0.5:8080",
        ("10.0.0.5", 8080),
        {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pacs.example.org"},
    )
    assert public_root(request, Settings()) == "https://pacs.example.org/dicom-web"


def test_configured_base_url_wins() -> None:
    settings = Settings(http={"public_base_url": "https://archive.example.org/pacs/"})
    request = _request("127.0.0.1", ("127.0.0.1", 8080))
    assert public_root(request, settings) == "https://archive.example.org/pacs/dicom-web"
