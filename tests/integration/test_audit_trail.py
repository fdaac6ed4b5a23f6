"""The audit trail on a real server: rows for QIDO, WADO, STOW and DELETE with the
right subject and UIDs, denied attempts, append-only storage, the audit logger,
and ``skypacs audit`` filtering.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from skypacs.index.audit_log import AuditRow
from skypacs.index.pool import init_connection
from skypacs.observability import AUDIT_LOGGER
from skypacs.security.api_keys import create_api_key
from skypacs.security.audit import AuditTrail
from tests.integration.auth_helpers import (
    archive_settings,
    audit_rows,
    bearer,
    running_archive,
)
from tests.integration.stow_helpers import multipart, part10, related, synthesize_study

pytestmark = pytest.mark.integration


async def make_keys(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        keys = {}
        for name, role in (("modality", "writer"), ("viewer", "reader"), ("ops", "admin")):
            keys[name], _row = await create_api_key(conn, name=name, role=role)
        return keys
    finally:
        await conn.close()


async def skypacs_cli(dsn: str, *args: str) -> tuple[int, str]:
    exe = str(Path(sys.executable).with_name("skypacs"))
    env = {**os.environ, "SKYPACS_INDEX__DSN": dsn, "SKYPACS_LOG__LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        exe, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


@pytest.fixture
async def trail(pg_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """Run one session of reads, stores, deletes and refusals; return what a test checks."""
    keys = await make_keys(pg_dsn)
    study, datasets = synthesize_study(2)
    series = str(datasets[0].SeriesInstanceUID)
    sops = [str(ds.SOPInstanceUID) for ds in datasets]
    settings = archive_settings(pg_dsn, tmp_path / "var", auth={"required": True})
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    async with running_archive(settings) as archive:
        client = archive.client
        stored = await client.post(
            archive.dicomweb("/studies"),
            content=multipart([part10(ds) for ds in datasets]),
            headers={**bearer(keys["modality"]), "Content-Type": related()},
        )
        assert stored.status_code == 200, stored.text
        found = await client.get(
            archive.dicomweb("/studies?PatientID=SECRET-MRN-42"), headers=bearer(keys["viewer"])
        )
        assert found.status_code == 200
        metadata = await client.get(
            archive.dicomweb(f"/studies/{study}/metadata"), headers=bearer(keys["viewer"])
        )
        assert metadata.status_code == 200
        path = f"/studies/{study}/series/{series}/instances/{sops[0]}"
        refused = await client.delete(archive.dicomweb(path), headers=bearer(keys["viewer"]))
        assert refused.status_code == 403
        deleted = await client.delete(archive.dicomweb(path), headers=bearer(keys["ops"]))
        assert deleted.status_code == 204
        anonymous = await client.get(archive.dicomweb(f"/studies/{study}/metadata"))
        assert anonymous.status_code == 401
    # The server has shut down: its lifespan flushed every queued record.
    return {"study": study, "series": series, "sops": sops, "log": caplog.records}


async def test_stow_is_audited_per_instance(pg_dsn: str, trail: dict[str, Any]) -> None:
    rows = await audit_rows(pg_dsn, action="store")
    assert {r["sop_instance_uid"] for r in rows} == set(trail["sops"])
    for row in rows:
        assert (row["subject"], row["key_name"], row["role"]) == (
            "apikey:modality",
            "modality",
            "writer",
        )
        assert (row["study_uid"], row["series_uid"]) == (trail["study"], trail["series"])
        assert (row["outcome"], row["status"], row["auth_method"]) == ("success", 200, "apikey")
        assert row["client_address"] == "127.0.0.1"
        assert row["route"] == "/dicom-web/studies"


async def test_qido_and_wado_reads_are_audited(pg_dsn: str, trail: dict[str, Any]) -> None:
    (search,) = await audit_rows(pg_dsn, action="search")
    assert (search["subject"], search["route"], search["outcome"]) == (
        "apikey:viewer", "/dicom-web/studies", "success",
    )  # fmt: skip
    assert search["query"] == "PatientID=SECRET-MRN-42"
    retrieves = await audit_rows(pg_dsn, action="retrieve", subject="apikey:viewer")
    assert [(r["study_uid"], r["route"], r["status"]) for r in retrieves] == [
        (trail["study"], "/dicom-web/studies/{study}/metadata", 200)
    ]


async def test_delete_and_refusals_are_audited(pg_dsn: str, trail: dict[str, Any]) -> None:
    deletes = await audit_rows(pg_dsn, action="delete")
    by_subject = {r["subject"]: r for r in deletes}
    done = by_subject["apikey:ops"]
    assert (done["outcome"], done["status"], done["role"]) == ("success", 204, "admin")
    assert (done["study_uid"], done["series_uid"], done["sop_instance_uid"]) == (
        trail["study"], trail["series"], trail["sops"][0],
    )  # fmt: skip
    refused = by_subject["apikey:viewer"]
    assert (refused["outcome"], refused["status"], refused["role"]) == ("denied", 403, "reader")
    (unknown,) = await audit_rows(pg_dsn, subject="unauthenticated")
    assert (unknown["outcome"], unknown["status"], unknown["auth_method"]) == (
        "denied",
        401,
        "none",
    )


async def test_the_audit_table_is_append_only(pg_dsn: str, trail: dict[str, Any]) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        for statement in (
            "UPDATE audit_log SET subject = 'nobody'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE subject = 'nobody'") == 0
    finally:
        await conn.close()


async def test_audit_log_lines_name_who_and_what_without_patient_data(
    pg_dsn: str, trail: dict[str, Any]
) -> None:
    lines = [r for r in trail["log"] if r.name == AUDIT_LOGGER]
    assert {getattr(r, "action", None) for r in lines} >= {"store", "search", "retrieve", "delete"}
    stores = [r for r in lines if getattr(r, "action", None) == "store"]
    assert [getattr(r, "subject", None) for r in stores] == ["apikey:modality"] * 2
    rows = await audit_rows(pg_dsn, action="store")
    assert {getattr(r, "request_id", None) for r in stores} == {r["request_id"] for r in rows}
    for record in lines:
        text = json.dumps(vars(record), default=str)
        assert "SECRET-MRN-42" not in text
        assert trail["study"] not in text


async def test_skypacs_audit_lists_and_filters(pg_dsn: str, trail: dict[str, Any]) -> None:
    code, out = await skypacs_cli(pg_dsn, "audit", "--subject", "apikey:modality", "--json")
    assert code == 0, out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert {r["sop_instance_uid"] for r in records} == set(trail["sops"])
    code, out = await skypacs_cli(pg_dsn, "audit", "--study", trail["study"], "--action", "delete")
    assert code == 0, out
    assert out.count("apikey:ops") == 1
    assert out.count("apikey:viewer") == 1
    code, out = await skypacs_cli(pg_dsn, "audit", "--since", "2999-01-01")
    assert (code, out.strip()) == (0, "no audit records")


def _row(request_id: str) -> AuditRow:
    return AuditRow(
        occurred_at=datetime.now(UTC), request_id=request_id, subject="anonymous",
        key_name=None, auth_method="none", role="admin", action="retrieve", method="GET",
        route="/dicom-web/studies/{study}", study_uid="1.2.3", series_uid=None,
        sop_instance_uid=None, query=None, client_address="127.0.0.1", status=200,
        outcome="success",
    )  # fmt: skip


async def _writes(pool: asyncpg.Pool, request_ids: list[str]) -> int:
    """How many transactions wrote the rows of ``request_ids`` (one per batch)."""
    return int(
        await pool.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM audit_log WHERE request_id = ANY($1)",
            request_ids,
        )
    )


@pytest.mark.parametrize(("linger_s", "writes"), [(1.0, 1), (0.0, 3)])
async def test_records_of_a_moment_share_one_write(
    pg_pool: asyncpg.Pool, linger_s: float, writes: int
) -> None:
    trail = AuditTrail(lambda: pg_pool, queue_size=100, batch_size=100, linger_s=linger_s)
    request_ids = [f"linger-{linger_s}-{n}" for n in range(3)]
    for request_id in request_ids:
        trail.record(_row(request_id))
        await asyncio.sleep(0.1)
    await trail.aclose()
    assert await _writes(pg_pool, request_ids) == writes
