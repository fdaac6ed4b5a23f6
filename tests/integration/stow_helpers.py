"""Shared pieces of the STOW-RS tests: a STOW app over real backends, bodies, checks.

:func:`open_stow` opens a :class:`~skypacs.runtime.Runtime` on a real Postgres
database and a real blob store (filesystem or SeaweedFS S3), puts it on the STOW
app by hand and drives the app in process through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydantic import SecretStr
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from skypacs.config import IndexSettings, Settings
from skypacs.runtime import Runtime, open_runtime
from skypacs.services.stow.app import create_app

BACKENDS = ("filesystem", "s3")
BASE_URL = "http://testserver"
STUDIES = "/dicom-web/studies"
BOUNDARY = "skypacs-test-boundary-7d3c"
DICOM_JSON = "application/dicom+json"

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
RETRIEVE_URL = "00081190"


def storage_for(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    """Storage settings for ``backend``; S3 gets a fresh bucket on the test SeaweedFS."""
    if backend == "s3":
        s3 = request.getfixturevalue("s3_settings")
        return {"backend": "s3", "s3": s3}
    return {"backend": "filesystem", "filesystem": {"fsync": False}}


def make_settings(dsn: str, data_dir: Path, storage: dict[str, Any], **stow: Any) -> Settings:
    """Settings for one test: its database, its blob store, STOW overrides."""
    return Settings(
        data_dir=data_dir,
        index=IndexSettings(dsn=SecretStr(dsn)),
        storage=storage,
        stow=stow,
    )


@dataclass
class Stow:
    """An in-process STOW app with its runtime, plus what a test inspects."""

    client: httpx.AsyncClient
    runtime: Runtime

    async def post(
        self, body: bytes | AsyncIterator[bytes], content_type: str, path: str = STUDIES
    ) -> httpx.Response:
        return await self.client.post(path, content=body, headers={"Content-Type": content_type})

    async def post_instances(
        self, files: Sequence[bytes], path: str = STUDIES, boundary: str = BOUNDARY
    ) -> httpx.Response:
        return await self.post(multipart(files, boundary), related(boundary), path)

    async def stored_blob(self, sop_instance_uid: str) -> bytes | None:
        """The bytes the archive serves for ``sop_instance_uid`` (None if not stored)."""
        key = await self.runtime.index.pool.fetchval(
            "SELECT blob_key FROM instances WHERE sop_instance_uid = $1 AND status = 'stored'",
            sop_instance_uid,
        )
        return None if key is None else await self.runtime.blobs.read(str(key))

    async def row_counts(self) -> dict[str, int]:
        rows = await self.runtime.index.pool.fetch(
            "SELECT status, count(*) AS n FROM instances GROUP BY status"
        )
        return {str(r["status"]): int(r["n"]) for r in rows}

    async def event_types(self) -> list[str]:
        rows = await self.runtime.index.pool.fetch("SELECT type FROM outbox ORDER BY seq")
        return [str(r["type"]) for r in rows]

    async def blob_keys(self) -> list[str]:
        return [info.key async for info in self.runtime.blobs.list("v1/")]

    async def assert_nothing_stored(self) -> None:
        """No instance row of any status, no blob, no event."""
        assert await self.row_counts() == {}
        assert await self.blob_keys() == []
        assert await self.event_types() == []


@asynccontextmanager
async def open_stow(settings: Settings) -> AsyncIterator[Stow]:
    """The STOW app over real backends, with ``app.state.runtime`` set by hand."""
    async with open_runtime(settings, migrate=False, relay=False) as runtime:
        app = create_app(settings)
        app.state.runtime = runtime
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=60) as client:
            yield Stow(client=client, runtime=runtime)


# --- request bodies -------------------------------------------------------------------


def related(
    boundary: str = BOUNDARY, *, quoted: bool = True, inner: str = "application/dicom"
) -> str:
    """A multipart/related Content-Type, boundary quoted or not."""
    value = f'"{boundary}"' if quoted else boundary
    return f'multipart/related; type="{inner}"; boundary={value}'


def multipart(
    bodies: Iterable[bytes],
    boundary: str = BOUNDARY,
    *,
    content_type: str = "application/dicom",
    close: bool = True,
) -> bytes:
    """A multipart/related body with one ``content_type`` part per body."""
    out = bytearray()
    for body in bodies:
        out += f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
        out += body + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def multipart_parts(
    parts: Iterable[tuple[dict[str, str], bytes]], boundary: str = BOUNDARY
) -> bytes:
    """A multipart body from explicit ``(headers, body)`` parts."""
    out = bytearray()
    for headers, body in parts:
        out += f"--{boundary}\r\n".encode()
        for name, value in headers.items():
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + body + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


async def chunked(data: bytes, size: int = 7919) -> AsyncIterator[bytes]:
    """``data`` as an async generator: httpx sends it chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


# --- DICOM data --------------------------------------------------------------------------


def part10(ds: Dataset) -> bytes:
    """``ds`` written as a Part 10 file."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def as_stored(data: bytes) -> bytes:
    """What the archive keeps of a Part 10 file: the same bytes, preamble zeroed."""
    return bytes(128) + data[128:]


def ct_small() -> Dataset:
    path = get_testdata_file("CT_small.dcm")
    assert isinstance(path, str)
    return pydicom.dcmread(path)


def with_new_uids(
    template: Dataset, *, study: str | None = None, series: str | None = None
) -> Dataset:
    """A copy of ``template`` with a fresh SOP Instance UID (and the given study/series)."""
    ds = copy.deepcopy(template)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    return ds


def synthesize_study(count: int) -> tuple[str, list[Dataset]]:
    """``count`` CT_small instances of one new study and series (fresh SOP UIDs)."""
    template = ct_small()
    study, series = generate_uid(), generate_uid()
    instances = []
    for number in range(1, count + 1):
        ds = with_new_uids(template, study=study, series=series)
        ds.InstanceNumber = number
        instances.append(ds)
    return study, instances


# --- responses -----------------------------------------------------------------------------


def _items(body: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    return list(body.get(tag, {}).get("Value", []))


def referenced_uids(response: httpx.Response) -> list[str]:
    """SOP Instance UIDs of the ReferencedSOPSequence (stored instances)."""
    return [
        item[REFERENCED_SOP_INSTANCE_UID]["Value"][0]
        for item in _items(response.json(), REFERENCED_SOP_SEQUENCE)
    ]


def failures(response: httpx.Response) -> list[int]:
    """FailureReason of every FailedSOPSequence item, in order."""
    return [
        int(item[FAILURE_REASON]["Value"][0])
        for item in _items(response.json(), FAILED_SOP_SEQUENCE)
    ]
