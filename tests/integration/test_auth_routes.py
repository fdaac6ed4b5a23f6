"""Route inventory: with authentication required, nothing but the probes answers
without credentials, on every app (serve, stow, qido, wado), each run by a real
uvicorn server. Also the anonymous default on loopback and its limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI

from skypacs.config import Settings
from skypacs.services.qido.app import create_app as qido_app
from skypacs.services.serve import create_app as serve_app
from skypacs.services.stow.app import create_app as stow_app
from skypacs.services.wado.app import create_app as wado_app
from tests.integration.auth_helpers import all_routes, archive_settings, running_archive

pytestmark = pytest.mark.integration

APPS: dict[str, Callable[[Settings], FastAPI]] = {
    "serve": serve_app,
    "stow": stow_app,
    "qido": qido_app,
    "wado": wado_app,
}
PROBES = {"/healthz", "/readyz"}
UID = "1.2.840.10008.99.1"
PARAMS = {"study": UID, "series": UID, "instance": UID, "frames": "1", "tag_path": "7FE00010"}


def concrete(template: str) -> str:
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: PARAMS[m[1]], template)


@pytest.mark.parametrize("name", list(APPS))
async def test_no_route_but_the_probes_answers_without_credentials(
    name: str, pg_dsn: str, tmp_path: Path
) -> None:
    settings = archive_settings(pg_dsn, tmp_path / "var", auth={"required": True})
    factory = APPS[name]
    routes = all_routes(factory(settings).routes)
    assert len(routes) > len(PROBES) + 1
    answered = []
    async with running_archive(settings, factory) as archive:
        for template, methods in routes:
            for method in sorted(methods):
                response = await archive.client.request(method, archive.url + concrete(template))
                is_probe = template in PROBES
                if (response.status_code == 401) == is_probe:
                    answered.append((method, template, response.status_code))
                if response.status_code == 401:
                    assert response.headers["www-authenticate"].startswith("Bearer")
        unknown = await archive.client.get(archive.url + "/no/such/route")
        assert unknown.status_code == 401
    assert answered == []


async def test_loopback_without_auth_runs_as_anonymous(pg_dsn: str, tmp_path: Path) -> None:
    settings = archive_settings(pg_dsn, tmp_path / "var")
    async with running_archive(settings) as archive:
        search = await archive.client.get(archive.dicomweb("/studies"))
        assert search.status_code == 200
        delete = await archive.client.delete(archive.dicomweb(f"/studies/{UID}"))
        assert delete.status_code == 404  # admin rights; nothing to delete
        relayed = await archive.client.get(
            archive.dicomweb("/studies"), headers={"X-Forwarded-For": "198.51.100.7"}
        )
        assert relayed.status_code == 401  # a proxy relays a remote client: not local


async def test_allow_anonymous_accepts_relayed_clients(pg_dsn: str, tmp_path: Path) -> None:
    auth = {"allow_anonymous": True, "anonymous_role": "reader"}
    settings = archive_settings(pg_dsn, tmp_path / "var", auth=auth)
    async with running_archive(settings) as archive:
        relayed = await archive.client.get(
            archive.dicomweb("/studies"), headers={"X-Forwarded-For": "198.51.100.7"}
        )
        assert relayed.status_code == 200
        delete = await archive.client.delete(archive.dicomweb(f"/studies/{UID}"))
        assert delete.status_code == 403


async def test_metrics_need_admin_unless_opened(pg_dsn: str, tmp_path: Path) -> None:
    required = archive_settings(pg_dsn, tmp_path / "a", auth={"required": True})
    async with running_archive(required) as archive:
        assert (await archive.client.get(archive.url + "/metrics")).status_code == 401
    opened = archive_settings(pg_dsn, tmp_path / "b", auth={"required": True, "open_metrics": True})
    async with running_archive(opened) as archive:
        response = await archive.client.get(archive.url + "/metrics")
        assert response.status_code == 200
        assert "skypacs_http_requests_total" in response.text
