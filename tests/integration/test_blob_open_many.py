"""Opening several whole blobs at once, and filesystem reads served from the page cache.

Runs against a real directory and SeaweedFS. The page-cache tests drop a file's
cached pages with ``posix_fadvise(DONTNEED)``, so the reads that follow must go
through the worker-thread path, as they would for a cold disk.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from skypacs.config import S3StorageSettings, Settings, StorageSettings
from skypacs.storage import BlobNotFound, BlobStore, FilesystemBlobStore, open_blob_store
from skypacs.storage.filesystem import DATA_SUFFIX

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024
SIZES = (0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 17, 300_000)


def payload(size: int, seed: int) -> bytes:
    return bytes((index * 31 + seed) % 251 for index in range(size))


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture(params=["filesystem", "s3"])
async def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    s3 = S3StorageSettings()
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_settings")
    storage = StorageSettings(
        backend="s3" if request.param == "s3" else "filesystem", s3=s3, read_chunk_bytes=CHUNK
    )
    async with open_blob_store(Settings(data_dir=tmp_path, storage=storage)) as store:
        yield store


async def read_whole(store: BlobStore, keys: list[str]) -> list[bytes]:
    readers = await store.open_many(keys)  # type: ignore[attr-defined]
    return [await reader.read_all() for reader in readers]


async def test_open_many_reads_every_object_in_order(blob_store: BlobStore) -> None:
    objects = {f"v1/many/{n}.dcm": payload(size, n) for n, size in enumerate(SIZES)}
    for key, data in objects.items():
        await blob_store.put(key, once(data))
    keys = list(reversed(objects))
    assert await read_whole(blob_store, keys) == [objects[key] for key in keys]


def files_open_under(root: Path) -> list[str]:
    """Paths under ``root`` this process holds open (other tests' files do not count)."""
    return [f.path for f in psutil.Process().open_files() if Path(f.path).is_relative_to(root)]


async def test_open_many_with_a_missing_key_fails_and_keeps_nothing_open(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    await blob_store.put("v1/there.dcm", once(payload(1000, 1)))
    with pytest.raises(BlobNotFound):
        await blob_store.open_many(["v1/there.dcm", "v1/missing.dcm"])
    assert files_open_under(tmp_path) == []
    assert await blob_store.read("v1/there.dcm") == payload(1000, 1)


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_read_refused(path: Path) -> bool:
    """True when the kernel reports the file's first page is not in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(16)], 0, os.RWF_NOWAIT)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.mark.parametrize(("start", "end"), [(0, None), (CHUNK + 5, 3 * CHUNK + 1)])
async def test_reads_of_uncached_files_go_through_a_thread(
    tmp_path: Path, start: int, end: int | None
) -> None:
    store = FilesystemBlobStore(tmp_path, fsync=True, read_chunk_bytes=CHUNK)
    data = payload(5 * CHUNK + 3, 7)
    await store.put("v1/cold.dcm", once(data))
    path = tmp_path / "v1" / f"cold.dcm{DATA_SUFFIX}"
    drop_from_page_cache(path)
    if not cached_read_refused(path):
        pytest.skip("this filesystem keeps the pages cached or ignores RWF_NOWAIT")
    reader = await store.open("v1/cold.dcm", start, end)
    async with reader:
        chunks = [chunk async for chunk in reader]
    assert b"".join(chunks) == data[start:end]
    assert all(0 < len(chunk) <= CHUNK for chunk in chunks)
    drop_from_page_cache(path)
    assert await read_whole(store, ["v1/cold.dcm"]) == [data]


async def test_a_cancelled_open_many_closes_what_it_opened(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, fsync=False, read_chunk_bytes=CHUNK)
    keys = [f"v1/c/{n}.dcm" for n in range(20)]
    for key in keys:
        await store.put(key, once(payload(100, 3)))
    opening = asyncio.ensure_future(store.open_many(keys))
    await asyncio.sleep(0)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    for _ in range(500):
        if not files_open_under(tmp_path):
            break
        await asyncio.sleep(0.01)
    assert files_open_under(tmp_path) == []
