"""A corpus of hostile requests against a real server: every one gets a 4xx answer,
never a 5xx, and nothing is stored.

Requests are sent with valid admin credentials (they must get past authentication
to reach the code under attack) and, where the bytes matter, over a raw socket so
that no client library normalizes them first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from skypacs.index.pool import init_connection
from skypacs.security.api_keys import create_api_key
from tests.integration.auth_helpers import (
    Archive,
    archive_settings,
    bearer,
    running_archive,
)
from tests.integration.stow_helpers import chunked, multipart, related

pytestmark = pytest.mark.integration

MAX_BODY = 256 * 1024
STUDY = "1.2.826.0.1.3680043.8.498.10"
SERIES = "1.2.826.0.1.3680043.8.498.11"
INSTANCE = "1.2.826.0.1.3680043.8.498.12"
BASE = f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}"

#: Raw request targets, sent byte for byte.
HOSTILE_TARGETS = [
    b"/dicom-web/studies/../../../../etc/passwd",
    b"/dicom-web/studies/..%2F..%2F..%2Fetc%2Fpasswd",
    b"/dicom-web/studies/%2e%2e%2f%2e%2e%2fetc%2fpasswd/metadata",
    b"/dicom-web/studies/1.2.3%00.4/metadata",
    b"/dicom-web/studies/" + b"1." * 40 + b"1/metadata",
    b"/dicom-web/studies/1.2.3/series/1.2.x/metadata",
    b"/dicom-web/studies/1..2/metadata",
    BASE.encode() + b"/bulkdata/../../../../etc/passwd",
    BASE.encode() + b"/bulkdata/7FE00010/..%2F..%2Fsecret",
    BASE.encode() + b"/frames/0",
    BASE.encode() + b"/frames/1,,2",
    BASE.encode() + b"/frames/" + b",".join(str(n).encode() for n in range(1, 12_001)),
    b"/dicom-web/studies?PatientName=%FF%FE%FD",
    b"/dicom-web/studies?PatientID=\xff\xfe",
    b"/dicom-web/series?Modality=%C3%28",
    b"/dicom-web/studies?limit=-1",
    b"/dicom-web/studies?StudyDate=20240101-20230101x",
    b"/dicom-web/studies?includefield=" + b"A" * 2000,
]


@pytest.fixture
async def hostile(pg_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[Archive, str, Path]]:
    conn = await asyncpg.connect(pg_dsn)
    await init_connection(conn)
    try:
        key, _row = await create_api_key(conn, name="attacker", role="admin")
    finally:
        await conn.close()
    data_dir = tmp_path / "var"
    settings = archive_settings(
        pg_dsn, data_dir, auth={"required": True}, stow={"max_body_bytes": MAX_BODY}
    )
    async with running_archive(settings) as archive:
        yield archive, key, data_dir


async def raw_status(archive: Archive, target: bytes, headers: bytes = b"") -> int:
    """Send one request with exactly these bytes; the status code of the answer."""
    host, port = archive.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"GET " + target + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            + headers + b"Connection: close\r\n\r\n"
        )  # fmt: skip
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    return int(status_line.split()[1])


async def assert_nothing_stored(dsn: str, data_dir: Path) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM instances") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await conn.close()
    blobs = data_dir / "blobs"
    assert not blobs.exists() or [p for p in blobs.rglob("*") if p.is_file()] == []


async def test_hostile_targets_get_4xx(hostile: tuple[Archive, str, Path], pg_dsn: str) -> None:
    archive, key, data_dir = hostile
    auth = f"Authorization: Bearer {key}\r\n".encode()
    answers = {target[:80]: await raw_status(archive, target, auth) for target in HOSTILE_TARGETS}
    assert {t: s for t, s in answers.items() if not 400 <= s < 500} == {}
    await assert_nothing_stored(pg_dsn, data_dir)


async def test_huge_headers_get_4xx(hostile: tuple[Archive, str, Path]) -> None:
    archive, key, _ = hostile
    auth = f"Authorization: Bearer {key}\r\n".encode()
    one_huge = b"X-Filler: " + b"a" * 200_000 + b"\r\n"
    many = b"".join(b"X-H%d: %s\r\n" % (n, b"b" * 100) for n in range(2_000))
    for extra in (one_huge, many):
        status = await raw_status(archive, b"/dicom-web/studies", auth + extra)
        assert 400 <= status < 500
    huge_token = b"Authorization: Bearer " + b"e" * 60_000 + b"\r\n"
    assert await raw_status(archive, b"/dicom-web/studies", huge_token) == 401


async def test_oversize_bodies_get_413_and_store_nothing(
    hostile: tuple[Archive, str, Path], pg_dsn: str
) -> None:
    archive, key, data_dir = hostile
    body = multipart([b"\0" * (MAX_BODY + 1)])
    headers = {**bearer(key), "Content-Type": related()}
    sized = await archive.client.post(archive.dicomweb("/studies"), content=body, headers=headers)
    assert sized.status_code == 413
    streamed = await archive.client.post(
        archive.dicomweb("/studies"), content=chunked(body), headers=headers
    )
    assert streamed.status_code == 413
    await assert_nothing_stored(pg_dsn, data_dir)


async def test_ten_thousand_parts_get_4xx_and_store_nothing(
    hostile: tuple[Archive, str, Path], pg_dsn: str
) -> None:
    archive, key, data_dir = hostile
    body = multipart([b"DICM"] * 10_001)
    assert len(body) < MAX_BODY * 4
    response = await archive.client.post(
        archive.dicomweb("/studies"),
        content=body,
        headers={**bearer(key), "Content-Type": related()},
    )
    assert 400 <= response.status_code < 500
    await assert_nothing_stored(pg_dsn, data_dir)


async def test_malformed_stow_requests_get_4xx(
    hostile: tuple[Archive, str, Path], pg_dsn: str
) -> None:
    archive, key, data_dir = hostile
    cases = [
        ("multipart/related", b"--x\r\n\r\n"),
        ('multipart/related; type="application/dicom"; boundary=', b"junk"),
        (related(), b"no boundary here at all"),
        ("application/dicom", b"\0" * 200),
        ("text/html", b"<script>"),
        (related(inner="application/dicom+json"), multipart([b"{not json"])),
    ]
    for content_type, body in cases:
        response = await archive.client.post(
            archive.dicomweb(f"/studies/{STUDY}"),
            content=body,
            headers={**bearer(key), "Content-Type": content_type},
        )
        assert 400 <= response.status_code < 500, (content_type, response.status_code)
    await assert_nothing_stored(pg_dsn, data_dir)
