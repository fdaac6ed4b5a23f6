"""Shared pieces of the WADO-RS tests: STOW and WADO apps over one real runtime.

The blob store is wrapped in :class:`CountingBlobStore`, a pass-through proxy
that measures how many bytes are read (a measurement, not a mock: every call
reaches the real store).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from skypacs.config import Settings
from skypacs.dicomweb.media_types import parse_media_type
from skypacs.runtime import Runtime, open_runtime
from skypacs.services.stow.app import create_app as create_stow_app
from skypacs.services.wado.app import create_app as create_wado_app
from skypacs.storage import BlobReader, BlobStore
from tests.integration.stow_helpers import BASE_URL, make_settings, multipart, related

DICOMWEB = "/dicom-web"


class CountingBlobStore:
    """Forwards every call to the real store and counts the bytes read from it."""

    def __init__(self, inner: BlobStore) -> None:
        self._inner = inner
        self.bytes_read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> BlobReader:
        return self._counted(await self._inner.open(key, start, end))

    async def open_many(self, keys: Sequence[str]) -> list[BlobReader]:
        return [self._counted(reader) for reader in await self._inner.open_many(keys)]

    def _counted(self, reader: BlobReader) -> BlobReader:
        async def counted() -> AsyncIterator[bytes]:
            async for chunk in reader:
                self.bytes_read += len(chunk)
                yield chunk

        return BlobReader(
            size=reader.size, start=reader.start, end=reader.end, chunks=counted(),
            on_close=reader.aclose,
        )  # fmt: skip

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        data = await self._inner.read(key, start, end)
        self.bytes_read += len(data)
        return data


@dataclass
class Archive:
    """STOW and WADO apps in process over one runtime with a counting blob store."""

    stow: httpx.AsyncClient
    wado: httpx.AsyncClient
    runtime: Runtime
    blobs: CountingBlobStore

    async def store(self, files: list[bytes]) -> None:
        response = await self.stow.post(
            f"{DICOMWEB}/studies",
            content=multipart(files),
            headers={"Content-Type": related()},
        )
        assert response.status_code == 200, response.text

    async def get(self, path: str, **headers: str) -> httpx.Response:
        return await self.wado.get(f"{DICOMWEB}{path}", headers=headers)


def s3_archive_settings(request: pytest.FixtureRequest, pg_dsn: str, data_dir: Path) -> Settings:
    s3 = request.getfixturevalue("s3_settings")
    return make_settings(
        pg_dsn, data_dir, {"backend": "s3", "s3": s3}, duplicate_policy="overwrite"
    )


@asynccontextmanager
async def open_archive(settings: Settings) -> AsyncIterator[Archive]:
    async with open_runtime(settings, migrate=False, relay=False) as real:
        counting = CountingBlobStore(real.blobs)
        runtime = dataclasses.replace(real, blobs=counting)  # type: ignore[arg-type]
        stow_app, wado_app = create_stow_app(settings), create_wado_app(settings)
        stow_app.state.runtime = runtime
        wado_app.state.runtime = runtime
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=stow_app), base_url=BASE_URL, timeout=120
            ) as stow,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=wado_app), base_url=BASE_URL, timeout=120
            ) as wado,
        ):
            yield Archive(stow=stow, wado=wado, runtime=runtime, blobs=counting)
        state = getattr(wado_app.state, "wado_state", None)
        if state is not None:
            await state.drain()


def split_multipart(response: httpx.Response) -> list[tuple[str, bytes]]:
    """``(Content-Type, body)`` of each part of a multipart/related response."""
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/related"), content_type
    boundary = parse_media_type(content_type).param("boundary")
    assert boundary
    body = b"\r\n" + response.content
    pieces = body.split(b"\r\n--" + boundary.encode())
    assert pieces[-1].startswith(b"--"), "missing close delimiter"
    parts = []
    for piece in pieces[1:-1]:
        head, _, payload = piece.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
        parts.append((fields["Content-Type"], payload))
    return parts
