"""Filesystem blob writes in few thread hops and reads whose first chunk comes with open."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skypacs.storage.filesystem import TEMP_MARKER, WRITE_BATCH_BYTES, FilesystemBlobStore

pytestmark = pytest.mark.unit

KEY = "v1/ab/cd/42.dcm"


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _failing(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise ConnectionResetError("client went away")


def _payload(size: int) -> bytes:
    return bytes((index * 7) % 256 for index in range(size))


def _leftovers(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if TEMP_MARKER in path.name]


@pytest.mark.parametrize("size", [0, 1, 65_536, WRITE_BATCH_BYTES + 12_345, 3 * WRITE_BATCH_BYTES])
async def test_put_then_read_round_trips(tmp_path: Path, size: int) -> None:
    store = FilesystemBlobStore(tmp_path, fsync=True, read_chunk_bytes=64 * 1024)
    data = _payload(size)
    result = await store.put(KEY, _chunks(data, 50_000))
    assert (result.size, result.sha256) == (size, hashlib.sha256(data).digest())
    assert await store.read(KEY) == data
    assert (await store.head(KEY)).size == size
    assert _leftovers(tmp_path) == []


async def test_failed_put_leaves_no_file(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, fsync=True, read_chunk_bytes=4096)
    with pytest.raises(ConnectionResetError):
        await store.put(KEY, _failing(_payload(2 * WRITE_BATCH_BYTES)))
    assert _leftovers(tmp_path) == []
    assert [info.key async for info in store.list("v1/")] == []


@pytest.mark.parametrize(("start", "end"), [(0, None), (5, 5), (100, 9000), (4095, 4097)])
async def test_ranged_reads_in_several_chunks(tmp_path: Path, start: int, end: int | None) -> None:
    store = FilesystemBlobStore(tmp_path, fsync=False, read_chunk_bytes=4096)
    data = _payload(10_000)
    await store.put(KEY, _chunks(data, 3000))
    reader = await store.open(KEY, start, end)
    async with reader:
        chunks = [chunk async for chunk in reader]
    assert b"".join(chunks) == data[start:end]
    assert all(len(chunk) <= 4096 for chunk in chunks)
    assert reader.closed
