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
    #: After a commit wakes the relay, how long it waits to gather more commits.
    relay_linger_s: float = Field(default=0.05, ge=0, le=5)
    source: str = "skypacs"


#: The most server processes ``SKYPACS_HTTP__WORKERS`` (or ``--workers``) may ask for.
MAX_WORKERS = 64

#: The largest mmap threshold glibc accepts on 64-bit systems.
MAX_MMAP_THRESHOLD = 32 * 1024**2


class HttpSettings(BaseModel):
    """HTTP edge: public base URL, proxies, CORS."""

    public_base_url: str | None = None
    trust_forwarded_headers: bool = True
    cors_allow_origins: list[str] = ["*"]
    dicomweb_prefix: str = "/dicom-web"
    # Time until a response starts (the whole request for STOW); 408 after it.
    request_timeout_s: float = Field(default=300.0, gt=0)
    # All request headers together; larger requests get 431.
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)
    # Server processes sharing the listening socket; about one per CPU core
    # for throughput. Each has its own index pool (pool_max_size connections).
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    # On SIGTERM, how long open requests may take to finish before they are cut.
    shutdown_grace_s: int = Field(default=30, ge=1)
    # Send stored files to plain-HTTP clients with sendfile(2), without copying
    # them through the server process (filesystem blobs only).
    sendfile: bool = True
    # glibc malloc in server processes (see skypacs.malloc_tuning): free memory
    # kept at the top of the heap for the next request (0: glibc's adaptive
    # defaults), and the block size from which memory is mapped on its own.
    malloc_trim_threshold_bytes: int = Field(default=64 * 1024**2, ge=0, le=2**31 - 1)
    malloc_mmap_threshold_bytes: int = Field(
        default=16 * 1024**2, ge=128 * 1024, le=MAX_MMAP_THRESHOLD
    )


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
    # Claims (``creating`` rows) a multipart request reserves in one round trip,
    # sized by the parts its Content-Length suggests are left.
    claim_block_max: int = Field(default=32, ge=1, le=1000)


class WadoSettings(BaseModel):
    """WADO-RS retrieve: transcoding workers, request limits, access recording."""

    transcode_workers: int = Field(default=2, ge=1, le=64)
    max_frames_per_request: int = Field(default=10_000, ge=1)
    access_flush_interval_s: float = Field(default=5.0, gt=0)
    gzip_min_bytes: int = Field(default=1024, ge=0)
    # Rendered images and thumbnails: decoded bytes held at once for one render
    # (rows x columns x samples x bytes x frames), thumbnail edge and JPEG quality.
    render_max_decoded_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    thumbnail_size: int = Field(default=128, ge=16, le=1024)
    thumbnail_quality: int = Field(default=80, ge=1, le=100)


class QidoSettings(BaseModel):
    """QIDO-RS search: result limits and administrator-defined query attributes."""

    max_results: int = Field(default=1000, ge=1, le=100_000)
    # Tags (8 hex digits) indexed for matching beyond the standard keys; run
    # `skypacs reindex` after changing the list.
    extra_query_tags: list[str] = []

    @model_validator(mode="after")
    def _tags(self) -> QidoSettings:
        tags = [tag.strip().upper() for tag in self.extra_query_tags]
        for tag in tags:
            if len(tag) != 8 or any(c not in "0123456789ABCDEF" for c in tag):
                raise ValueError(f"extra_query_tags: {tag!r} is not a tag of 8 hex digits")
        self.extra_query_tags = list(dict.fromkeys(tags))
        return self


class OidcSettings(BaseModel):
    """OIDC bearer tokens: issuer, audience and the JWKS that signs them."""

    issuer: str | None = None
    audience: str | None = None
    # https://, or file:// for air-gapped sites.
    jwks_url: str | None = None
    # A dotted path into the claims; Keycloak's realm_access.roles is read as well.
    roles_claim: str = "roles"
    algorithms: list[str] = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
    leeway_s: int = Field(default=30, ge=0, le=300)
    jwks_cache_s: float = Field(default=3600.0, gt=0)
    jwks_min_refresh_interval_s: float = Field(default=30.0, ge=0)
    jwks_timeout_s: float = Field(default=10.0, gt=0)
    # http:// JWKS on a loopback address (test identity providers only).
    allow_http_loopback_jwks: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.issuer or self.jwks_url)

    @model_validator(mode="after")
    def _complete(self) -> OidcSettings:
        if self.configured and not (self.issuer and self.audience and self.jwks_url):
            raise ValueError("OIDC needs ISSUER, AUDIENCE and JWKS_URL together")
        if any(alg.lower() == "none" or alg.startswith("HS") for alg in self.algorithms):
            raise ValueError("algorithms: only asymmetric signature algorithms are accepted")
        return self


class AuthSettings(BaseModel):
    """Authentication, roles and the audit trail (see skypacs.security)."""

    # Demand credentials on every protected route, loopback included (API keys
    # alone satisfy it); OIDC settings imply it.
    required: bool = False
    # Explicitly accept anonymous access on a non-loopback listener.
    allow_anonymous: bool = False
    anonymous_role: Literal["reader", "writer", "admin"] = "admin"
    # /metrics without credentials (for scrapers confined by network policy).
    open_metrics: bool = False
    oidc: OidcSettings = OidcSettings()
    audit_queue_size: int = Field(default=100_000, ge=100)
    audit_batch_size: int = Field(default=500, ge=1, le=10_000)
    #: How long the audit writer gathers records before writing a batch.
    audit_linger_s: float = Field(default=0.1, ge=0, le=5)

    @property
    def enforced(self) -> bool:
        """Whether every protected request must carry credentials."""
        return self.required or self.oidc.configured


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
    wado: WadoSettings = WadoSettings()
    qido: QidoSettings = QidoSettings()
    log: LogSettings = LogSettings()
    auth: AuthSettings = AuthSettings()

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
