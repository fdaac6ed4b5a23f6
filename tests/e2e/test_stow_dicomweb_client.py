"""The Python dicomweb-client storing into a real ``skypacs serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.fixtures.skypacs import ServerProcess
from tests.integration.stow_helpers import (
    DICOM_JSON,
    ct_small,
    part10,
    synthesize_study,
    with_new_uids,
)

pytestmark = pytest.mark.integration

#: Small enough that dicomweb-client sends every body below with chunked encoding.
CHUNK_SIZE = 16 * 1024


def index_dsn(server: ServerProcess) -> str:
    """The embedded Postgres of the server's data dir (Unix socket in pgdata)."""
    return f"postgresql://postgres@/skypacs?host={server.data_dir / 'postgres'}"


@pytest.fixture
async def index(skypacs_server: ServerProcess) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(index_dsn(skypacs_server))
    try:
        yield conn
    finally:
        await conn.close()


def _client(server: ServerProcess) -> DICOMwebClient:
    return DICOMwebClient(url=server.dicomweb, chunk_size=CHUNK_SIZE)


async def _stored(index: asyncpg.Connection, uids: list[str]) -> int:
    return int(
        await index.fetchval(
            "SELECT count(*) FROM instances WHERE sop_instance_uid = ANY($1) AND status = 'stored'",
            uids,
        )
    )


async def test_store_instances_gets_a_parsed_response(
    skypacs_server: ServerProcess, index: asyncpg.Connection
) -> None:
    study, instances = synthesize_study(5)
    uids = [str(ds.SOPInstanceUID) for ds in instances]
    response = _client(skypacs_server).store_instances(datasets=instances)
    referenced = [str(item.ReferencedSOPInstanceUID) for item in response.ReferencedSOPSequence]
    assert referenced == uids
    assert "FailedSOPSequence" not in response
    assert response.RetrieveURL.endswith(f"/studies/{study}")
    assert all(
        f"/instances/{uid}" in item.RetrieveURL
        for uid, item in zip(uids, response.ReferencedSOPSequence, strict=True)
    )
    assert await _stored(index, uids) == 5


async def test_store_instances_into_a_named_study(
    skypacs_server: ServerProcess, index: asyncpg.Connection
) -> None:
    study, instances = synthesize_study(3)
    uids = [str(ds.SOPInstanceUID) for ds in instances]
    response = _client(skypacs_server).store_instances(datasets=instances, study_instance_uid=study)
    assert [str(i.ReferencedSOPInstanceUID) for i in response.ReferencedSOPSequence] == uids
    assert await _stored(index, uids) == 3


async def test_response_media_type_is_exactly_dicom_json(skypacs_server: ServerProcess) -> None:
    data = part10(with_new_uids(ct_small()))
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{skypacs_server.dicomweb}/studies",
            content=data,
            headers={"Content-Type": "application/dicom"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == DICOM_JSON
