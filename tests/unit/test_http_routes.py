"""The service route tables: every PS3.18 route present, validated, documented."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from skypacs.config import Settings
from skypacs.http import RouteSpec
from skypacs.services import serve
from skypacs.services.qido import app as qido_app
from skypacs.services.qido import routes as qido_routes
from skypacs.services.stow import app as stow_app
from skypacs.services.stow import routes as stow_routes
from skypacs.services.wado import app as wado_app
from skypacs.services.wado import routes as wado_routes

pytestmark = pytest.mark.unit

STUDY = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
SERIES = "1.2.840.113619.2.55.3.604688119.969.1268071029.321"
INSTANCE = "1.2.840.113619.2.55.3.604688119.969.1268071029.322"

SERVICES: list[tuple[Callable[[Settings], FastAPI], tuple[RouteSpec, ...]]] = [
    (stow_app.create_app, stow_routes.ROUTES),
    (qido_app.create_app, qido_routes.ROUTES),
    (wado_app.create_app, wado_routes.ROUTES),
]
ALL_ROUTES = stow_routes.ROUTES + qido_routes.ROUTES + wado_routes.ROUTES


def concrete(path: str) -> str:
    """A request path for a route template, with valid values for every parameter."""
    return (
        path.replace("{study}", STUDY)
        .replace("{series}", SERIES)
        .replace("{instance}", INSTANCE)
        .replace("{frames}", "1,2")
        .replace("{tag_path:path}", "7FE00010")
    )


@pytest.fixture(scope="module")
def serve_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """The combined app, without its lifespan: these routes need no backend yet."""
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("serve")))
    return TestClient(serve.create_app(settings))


def test_route_tables_cover_ps3_18() -> None:
    table = {(spec.method, spec.path) for spec in ALL_ROUTES}
    expected = {
        ("POST", "/studies"),
        ("POST", "/studies/{study}"),
        ("GET", "/studies"),
        ("GET", "/studies/{study}/series"),
        ("GET", "/series"),
        ("GET", "/studies/{study}/series/{series}/instances"),
        ("GET", "/studies/{study}/instances"),
        ("GET", "/instances"),
        ("GET", "/studies/{study}"),
        ("GET", "/studies/{study}/series/{series}"),
        ("GET", "/studies/{study}/series/{series}/instances/{instance}"),
        ("GET", "/studies/{study}/metadata"),
        ("GET", "/studies/{study}/series/{series}/metadata"),
        ("GET", "/studies/{study}/series/{series}/instances/{instance}/metadata"),
        ("GET", "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}"),
        ("GET", "/studies/{study}/rendered"),
        ("GET", "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered"),
        ("GET", "/studies/{study}/series/{series}/thumbnail"),
        ("DELETE", "/studies/{study}"),
        ("DELETE", "/studies/{study}/series/{series}/instances/{instance}"),
        ("GET", "/wado"),
    }
    assert expected <= table


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/studies/1.2.abc/series", "study"),
        ("GET", "/studies/1..2/metadata", "study"),
        ("GET", "/studies/.1.2", "study"),
        ("GET", f"/studies/1.{'2' * 64}", "study"),
        ("POST", "/studies/1.2.3.", "study"),
        ("DELETE", f"/studies/{STUDY}/series/x", "series"),
        ("GET", f"/studies/{STUDY}/series/{SERIES}/instances/1.2-3/metadata", "instance"),
        ("GET", f"/studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}/frames/0", "frames"),
        ("GET", f"/studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}/frames/1,,2", "frames"),
        (
            "GET",
            f"/studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}/bulkdata/etc/passwd",
            "tag_path",
        ),
    ],
)
def test_malformed_path_parameters_are_400(
    serve_client: TestClient, method: str, path: str, param: str
) -> None:
    response = serve_client.request(method, "/dicom-web" + path)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad request"
    assert f"path parameter '{param}' is not" in body["detail"]
    if param in {"study", "series", "instance"}:
        assert "valid UID" in body["detail"]


def test_uid_of_64_characters_is_accepted(serve_client: TestClient) -> None:
    uid = "1." + "2" * 62
    assert len(uid) == 64
    # Path validation passes; the route then answers as it does without a backend.
    assert serve_client.get(f"/dicom-web/studies/{uid}/series").status_code not in (400, 422)


def test_wrong_method_on_a_dicomweb_route_is_405(serve_client: TestClient) -> None:
    response = serve_client.put("/dicom-web/studies")
    assert response.status_code == 405
    assert response.json()["error"] == "method not allowed"
    assert "allow" in response.headers


def openapi_paths(app: FastAPI) -> dict[str, dict[str, dict[str, object]]]:
    paths: dict[str, dict[str, dict[str, object]]] = app.openapi()["paths"]
    return paths


@pytest.mark.parametrize(("factory", "routes"), SERVICES)
def test_openapi_lists_every_route_with_a_summary(
    tmp_path: Path, factory: Callable[[Settings], FastAPI], routes: tuple[RouteSpec, ...]
) -> None:
    paths = openapi_paths(factory(Settings(data_dir=tmp_path)))
    for spec in routes:
        template = "/dicom-web" + spec.path.replace(":path", "")
        operation = paths[template][spec.method.lower()]
        assert operation["summary"] == spec.summary
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)


def test_openapi_declares_multipart_stow_bodies(tmp_path: Path) -> None:
    paths = openapi_paths(stow_app.create_app(Settings(data_dir=tmp_path)))
    body = paths["/dicom-web/studies"]["post"]["requestBody"]
    assert isinstance(body, dict)
    assert 'multipart/related; type="application/dicom"' in body["content"]


def test_openapi_documents_uid_path_parameters(tmp_path: Path) -> None:
    paths = openapi_paths(qido_app.create_app(Settings(data_dir=tmp_path)))
    params = paths["/dicom-web/studies/{study}/series"]["get"]["parameters"]
    assert isinstance(params, list)
    study = next(p for p in params if p["name"] == "study")
    assert study["in"] == "path"
    assert study["schema"]["pattern"] == r"^[0-9]+(\.[0-9]+)*$"
    assert study["schema"]["maxLength"] == 64


def test_dicomweb_prefix_comes_from_settings(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "http": {"dicomweb_prefix": "/pacs/dicomweb/"}}
    )
    paths = openapi_paths(qido_app.create_app(settings))
    assert "/pacs/dicomweb/studies" in paths
    assert "/dicom-web/studies" not in paths
