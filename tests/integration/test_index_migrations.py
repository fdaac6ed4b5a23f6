"""Migrations against a real Postgres: idempotent, recorded, tamper-evident."""

from __future__ import annotations

import asyncpg
import pytest

from skypacs.config import Settings
from skypacs.index import open_index, run_migrations
from skypacs.index.migrator import (
    MigrationError,
    apply_migrations,
    available_migrations,
    pending_migrations,
)

pytestmark = pytest.mark.integration


async def test_migrate_twice_is_a_noop(pg_empty_dsn: str) -> None:
    settings = Settings(index={"dsn": pg_empty_dsn})
    first = await run_migrations(settings)
    second = await run_migrations(settings)
    assert first == [m.name for m in available_migrations()]
    assert second == []


async def test_schema_has_the_hierarchy_and_outbox(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {"patients", "studies", "series", "instances", "outbox", "outbox_cursors"} <= tables
        assert await pending_migrations(conn) == []
    finally:
        await conn.close()


async def test_edited_migration_is_refused(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn)
    finally:
        await conn.close()


async def test_open_index_refuses_an_unmigrated_schema(pg_empty_dsn: str) -> None:
    settings = Settings(index={"dsn": pg_empty_dsn})
    with pytest.raises(Exception, match="skypacs migrate"):
        async with open_index(settings, migrate=False):
            pass
    async with open_index(settings, migrate=True) as index:
        await index.ping()


async def test_one_stored_version_per_sop_instance(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        patient = await conn.fetchval("INSERT INTO patients (patient_id) VALUES ('P') RETURNING id")
        study = await conn.fetchval(
            "INSERT INTO studies (study_uid, patient_pk) VALUES ('1.2', $1) RETURNING id", patient
        )
        series = await conn.fetchval(
            "INSERT INTO series (series_uid, study_pk) VALUES ('1.2.3', $1) RETURNING id", study
        )
        insert = (
            "INSERT INTO instances (sop_instance_uid, sop_class_uid, study_uid, series_uid,"
            " series_pk, study_pk, transfer_syntax_uid, blob_key, status) VALUES ('1.2.3.4',"
            " '1.2', '1.2', '1.2.3', $1, $2, '1.2.840.10008.1.2.1', $3, $4)"
        )
        await conn.execute(insert, series, study, "k1", "stored")
        await conn.execute(insert, series, study, "k2", "creating")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("UPDATE instances SET status = 'stored' WHERE blob_key = 'k2'")
    finally:
        await conn.close()


async def test_embedded_server_starts_stops_and_restarts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path)
    async with open_index(settings, migrate=True) as index:
        assert index.embedded is not None
        await index.pool.execute("INSERT INTO patients (patient_id) VALUES ('kept')")
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    async with open_index(settings, migrate=False) as index:
        assert await index.pool.fetchval("SELECT count(*) FROM patients") == 1
