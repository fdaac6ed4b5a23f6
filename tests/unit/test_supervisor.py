"""The pieces of ``serve --workers``: the shared socket and what the operator reads."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from skypacs.config import Settings
from skypacs.services import cli
from skypacs.services.http_server import listening_banner
from skypacs.services.supervisor import listen

pytestmark = pytest.mark.unit


def test_the_shared_socket_listens_on_ipv4() -> None:
    with listen("127.0.0.1", 0) as sock:
        assert sock.family == socket.AF_INET
        with socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=5):
            pass


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no dual-stack IPv6 here")
def test_the_shared_socket_on_any_ipv6_address_also_takes_ipv4() -> None:
    with listen("::", 0) as sock:
        assert sock.family == socket.AF_INET6
        with socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=5):
            pass


def test_the_banner_names_the_workers_only_when_there_are_several(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    one = listening_banner(settings, "127.0.0.1", 8080)
    two = listening_banner(settings, "127.0.0.1", 8080, workers=2)
    assert one == f"SkyPACS listening on http://127.0.0.1:8080/dicom-web (data in {tmp_path})"
    assert two == (
        f"SkyPACS listening on http://127.0.0.1:8080/dicom-web (2 workers, data in {tmp_path})"
    )


def test_several_workers_are_refused_off_linux(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(cli, "configure_logging", lambda _settings: None)
    status = cli.main(["serve", "--workers", "2", "--data-dir", str(tmp_path)])
    assert status == 2
    assert "several workers need Linux" in capsys.readouterr().err
