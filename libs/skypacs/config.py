"""The one settings tree for every SkyPACS process.

Settings come only from the environment (prefix ``SKYPACS_``, nested delimiter
``__``), e.g. ``SKYPACS_INDEX__DSN`` or ``SKYPACS_STORAGE__S3__BUCKET``. Nothing is
read at import time: call :func:`load_settings` at startup. Invalid settings raise
:class:`ConfigError`, whose message names each variable and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SKYPACS_"
ENV_DELIMITER = "__"


class ConfigError(Exception):
    """Settings are invalid; the message tells the operator what to fix."""


class IndexSettings(BaseModel):
    """The Postgres index. Without a DSN an embedded server runs in the data dir."""

    dsn: SecretStr | None = None
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    command_timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    migrate_on_start: bool = False

    @model_validator(mode="after")
    def _pool_bounds(self) -> IndexSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self


class FilesystemStorageSettings(BaseModel):
    """Blobs as files; ``root`` defaults to ``<data_dir>/blobs``."""

    root: Path | None = None
    fsync: bool = True


class S3StorageSettings(BaseModel):
    """Any S3 API (AWS S3, SeaweedFS, Ceph RGW, Garage)."""

    bucket: str | None = None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    prefix: str = ""
    addressing_style: Literal["auto", "path", "virtual"] = "path"
    multipart_threshold_bytes: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024)
    multipart_part_size_bytes: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024)
    max_pool_connections: int = Field(default=64, ge=1)
    create_bucket: bool = False


class StorageSettings(BaseModel):
    backend: Literal["filesystem", "s3"] = "filesystem"
    filesystem: FilesystemStorageSettings = FilesystemStorageSettings()
    s3: S3StorageSettings = S3StorageSettings()
    read_chunk_bytes: int = Field(default=1024 * 1024, ge=4096)

    @model_validator(mode="after")
    def _backend_complete(self) -> StorageSettings:
        if self.backend == "s3" and not self.s3.bucket:
            raise ValueError(
                "SKYPACS_STORAGE__S3__BUCKET is required when SKYPACS_STORAGE__BACKEND=s3"
            )
        return self


class KafkaSettings(BaseModel):
    """Kafka for lifecycle events; unset bootstrap servers means in-process events."""

    bootstrap_servers: str | None = None
    topic: str = "skypacs.events"
    client_id: str = "skypacs"
    # Idempotent producers need broker support for InitProducerId; keep it on for
    # Apache Kafka and turn it off only for brokers that lack it.
    idempotent: bool = True
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    create_topic: bool = True
    topic_partitions: int = Field(default=12, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)


class EventsSettings(BaseModel):
    kafka: KafkaSettings = KafkaSettings()
    relay_batch_size: int = Field(default=500, ge=1, le=10_000)
    relay_poll_interval_s: float = Field(default=0.5, gt=0)
    relay_retry_backoff_s: float = Field(default=2.0, gt=0)
    source: str = "skypacs"


class HttpSettings(BaseModel):
    """HTTP edge: public base URL, proxies, CORS."""

    public_base_url: str | None = None
    trust_forwarded_headers: bool = True
    cors_allow_origins: list[str] = ["*"]
    dicomweb_prefix: str = "/dicom-web"


class StowSettings(BaseModel):
    """STOW-RS ingest: duplicate handling and request limits (PS3.18 §10.5)."""

    # Different bytes under an existing SOP Instance UID: reject (failure 0x0111),
    # overwrite (new version replaces the old), or keep (the stored one stays).
    duplicate_policy: Literal["reject", "overwrite", "keep"] = "reject"
    max_body_bytes: int = Field(default=8 * 1024**3, ge=1024)
    max_parts: int = Field(default=10_000, ge=1)
    max_part_header_bytes: int = Field(default=16 * 1024, ge=256)
    max_dataset_header_bytes: int = Field(default=64 * 1024**2, ge=64 * 1024)
    max_metadata_json_bytes: int = Field(default=64 * 1024**2, ge=1024)
    bulk_data_threshold_bytes: int = Field(default=1024, ge=64)
    stale_creating_after_s: float = Field(default=3600.0, gt=0)


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = True
    access_log: bool = True


class Settings(BaseSettings):
    """Root of the settings tree."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="ignore",
        case_sensitive=False,
    )

    data_dir: Path = Path("./var")
    index: IndexSettings = IndexSettings()
    storage: StorageSettings = StorageSettings()
    events: EventsSettings = EventsSettings()
    http: HttpSettings = HttpSettings()
    stow: StowSettings = StowSettings()
    log: LogSettings = LogSettings()

    @property
    def blob_root(self) -> Path:
        return self.storage.filesystem.root or self.data_dir / "blobs"


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable that sets the field at ``loc``."""
    return ENV_PREFIX + ENV_DELIMITER.join(str(part).upper() for part in loc)


def describe_errors(error: ValidationError) -> str:
    lines = ["invalid settings:"]
    for item in error.errors():
        loc = tuple(p for p in item.get("loc", ()) if p != "__root__")
        where = env_name(loc) if loc else "settings"
        lines.append(f"  {where}: {item.get('msg', 'invalid value')}")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings tree from the environment.

    ``overrides`` (for example ``data_dir`` from a CLI flag) win over the
    environment. Raises :class:`ConfigError` naming every offending variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
