"""The service apps over real backends: Postgres, the filesystem, SeaweedFS S3."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from skypacs.config import IndexSettings, S3StorageSettings, Settings, StorageSettings
from skypacs.errors import DependencyUnavailable
from skypacs.services import serve
from skypacs.services.qido import app as qido_app
from skypacs.services.stow import app as stow_app
from skypacs.services.wado import app as wado_app
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import with_database

pytestmark = pytest.mark.integration


def settings_for(data_dir: Path, dsn: str, **extra: object) -> Settings:
    return Settings.model_validate(
        {"data_dir": data_dir, "index": IndexSettings(dsn=SecretStr(dsn)), **extra}
    )


@pytest.mark.parametrize("module", [stow_app, qido_app, wado_app], ids=["stow", "qido", "wado"])
def test_each_service_is_ready_on_a_migrated_index(
    module: object, pg_dsn: str, tmp_path: Path
) -> None:
    app = module.create_app(settings_for(tmp_path, pg_dsn))  # type: ignore[attr-defined]
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["dependencies"] == {"index": "ok", "blobs": "ok", "events": "ok"}
        assert client.get("/metrics").status_code == 200
    assert (tmp_path / "blobs").is_dir()


def test_service_refuses_an_unmigrated_index(pg_empty_dsn: str, tmp_path: Path) -> None:
    app = qido_app.create_app(settings_for(tmp_path, pg_empty_dsn))
    with pytest.raises(DependencyUnavailable, match="skypacs migrate"), TestClient(app):
        pass


def test_serve_app_migrates_on_start(pg_empty_dsn: str, tmp_path: Path) -> None:
    with TestClient(serve.create_app(settings_for(tmp_path, pg_empty_dsn))) as client:
        assert client.get("/readyz").status_code == 200


async def test_readyz_503_when_the_index_database_disappears(
    pg_server_dsn: str, pg_dsn: str, tmp_path: Path
) -> None:
    app = qido_app.create_app(settings_for(tmp_path, pg_dsn))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        database = urlsplit(pg_dsn).path.lstrip("/")
        admin = await asyncpg.connect(with_database(pg_server_dsn, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        finally:
            await admin.close()
        response = client.get("/readyz", headers={"Origin": "https://viewer.example"})
        assert response.status_code == 503
        assert "retry-after" in response.headers
        deps = response.json()["dependencies"]
        assert deps["index"].startswith("unavailable")
        assert deps["blobs"] == "ok"
        assert response.headers["access-control-allow-origin"] == "*"


def test_serve_app_on_s3_storage(
    pg_dsn: str, s3_settings: S3StorageSettings, tmp_path: Path
) -> None:
    storage = StorageSettings(backend="s3", s3=s3_settings)
    with TestClient(serve.create_app(settings_for(tmp_path, pg_dsn, storage=storage))) as client:
        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["dependencies"]["blobs"] == "ok"


def test_readyz_names_an_unreachable_s3_endpoint(pg_dsn: str, tmp_path: Path) -> None:
    closed = S3StorageSettings(
        bucket="nowhere",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id=SecretStr("k"),
        secret_access_key=SecretStr("s"),
    )
    storage = StorageSettings(backend="s3", s3=closed)
    app = qido_app.create_app(settings_for(tmp_path, pg_dsn, storage=storage))
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        deps = response.json()["dependencies"]
        assert deps["blobs"].startswith("unavailable")
        assert deps["index"] == "ok"
