"""Settings from the environment: nested variables, overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from skypacs.config import ConfigError, Settings, env_name, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("SKYPACS_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("./var")
    assert settings.index.dsn is None
    assert settings.storage.backend == "filesystem"
    assert settings.blob_root == Path("./var") / "blobs"
    assert settings.events.kafka.bootstrap_servers is None
    assert settings.http.dicomweb_prefix == "/dicom-web"
    assert settings.http.cors_allow_origins == ["*"]


def test_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPACS_INDEX__DSN", "postgresql://pacs:s3cret@db:5432/pacs")
    monkeypatch.setenv("SKYPACS_INDEX__POOL_MAX_SIZE", "20")
    monkeypatch.setenv("SKYPACS_STORAGE__BACKEND", "s3")
    monkeypatch.setenv("SKYPACS_STORAGE__S3__BUCKET", "dicom")
    monkeypatch.setenv("SKYPACS_STORAGE__S3__ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("SKYPACS_EVENTS__KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("SKYPACS_HTTP__CORS_ALLOW_ORIGINS", '["https://ohif.example"]')
    monkeypatch.setenv("SKYPACS_LOG__LEVEL", "DEBUG")
    settings = load_settings()
    assert settings.index.dsn is not None
    assert settings.index.dsn.get_secret_value() == "postgresql://pacs:s3cret@db:5432/pacs"
    assert settings.index.pool_max_size == 20
    assert settings.storage.backend == "s3"
    assert settings.storage.s3.bucket == "dicom"
    assert settings.storage.s3.endpoint_url == "http://127.0.0.1:8333"
    assert settings.events.kafka.bootstrap_servers == "kafka:9092"
    assert settings.http.cors_allow_origins == ["https://ohif.example"]
    assert settings.log.level == "DEBUG"


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("skypacs_storage__s3__region", "eu-west-3")
    assert load_settings().storage.s3.region == "eu-west-3"


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPACS_INDEX__DSN", "postgresql://pacs:s3cret@db/pacs")
    monkeypatch.setenv("SKYPACS_STORAGE__S3__SECRET_ACCESS_KEY", "topsecretkey")
    text = repr(load_settings())
    assert "s3cret" not in text
    assert "topsecretkey" not in text


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SKYPACS_DATA_DIR", "/elsewhere")
    assert load_settings(data_dir=tmp_path).data_dir == tmp_path
    assert load_settings().data_dir == Path("/elsewhere")


def test_environment_is_read_at_load_time(monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_settings()
    monkeypatch.setenv("SKYPACS_LOG__LEVEL", "ERROR")
    assert first.log.level == "INFO"
    assert load_settings().log.level == "ERROR"


def test_s3_without_bucket_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPACS_STORAGE__BACKEND", "s3")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SKYPACS_STORAGE__S3__BUCKET" in str(caught.value)


def test_unknown_backend_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPACS_STORAGE__BACKEND", "tape")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "SKYPACS_STORAGE__BACKEND" in message
    assert "filesystem" in message


def test_bad_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPACS_INDEX__POOL_MAX_SIZE", "lots")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SKYPACS_INDEX__POOL_MAX_SIZE" in str(caught.value)


def test_every_error_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPACS_INDEX__POOL_MAX_SIZE", "0")
    monkeypatch.setenv("SKYPACS_LOG__LEVEL", "LOUD")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "SKYPACS_INDEX__POOL_MAX_SIZE" in message
    assert "SKYPACS_LOG__LEVEL" in message


def test_pool_bounds_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPACS_INDEX__POOL_MIN_SIZE", "5")
    monkeypatch.setenv("SKYPACS_INDEX__POOL_MAX_SIZE", "2")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SKYPACS_INDEX" in str(caught.value)
    assert "pool_min_size" in str(caught.value)


def test_env_name_of_a_nested_field() -> None:
    assert env_name(("storage", "s3", "bucket")) == "SKYPACS_STORAGE__S3__BUCKET"


def test_settings_object_is_plain_data() -> None:
    settings = Settings(data_dir=Path("/srv/pacs"))
    assert settings.blob_root == Path("/srv/pacs/blobs")
