"""One contract for every blob store backend, run against real storage.

The filesystem backend writes under a temporary directory; the S3 backend talks
to SeaweedFS on loopback with a fresh bucket per test.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import SecretStr

from skypacs.config import S3StorageSettings, Settings, StorageSettings
from skypacs.errors import BadRequest, DependencyUnavailable, NotFound
from skypacs.storage import (
    BlobNotFound,
    BlobStore,
    FilesystemBlobStore,
    InvalidRange,
    S3BlobStore,
    open_blob_store,
)
from tests.fixtures.ports import free_port
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
CHUNK = 64 * 1024
PAYLOAD = bytes((i * 7 + i // 251) % 256 for i in range(300_000))
PART = 5 * MiB
GIB = 1024 * MiB
RSS_BUDGET = 100 * MiB


def settings_for(backend: str, tmp_path: Path, s3: S3StorageSettings | None) -> Settings:
    storage = StorageSettings(
        backend="s3" if backend == "s3" else "filesystem",
        s3=s3 or S3StorageSettings(),
        read_chunk_bytes=CHUNK,
    )
    return Settings(data_dir=tmp_path, storage=storage)


@pytest.fixture(params=["filesystem", "s3"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Backend settings with small multipart parts so modest objects span several."""
    s3 = None
    if request.param == "s3":
        base: S3StorageSettings = request.getfixturevalue("s3_settings")
        s3 = base.model_copy(
            update={"multipart_threshold_bytes": PART, "multipart_part_size_bytes": PART}
        )
    return settings_for(request.param, tmp_path, s3)


@pytest.fixture
async def blob_store(store_settings: Settings) -> AsyncIterator[BlobStore]:
    async with open_blob_store(store_settings) as store:
        yield store


async def stream(data: bytes, size: int = 50_000) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def failing(after: int) -> AsyncIterator[bytes]:
    """Yields ``after`` bytes, then fails as a broken client upload would."""
    sent = 0
    while sent < after:
        yield b"x" * MiB
        sent += MiB
    raise ConnectionResetError("client went away")


async def read_back(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    async with await store.open(key, start, end) as reader:
        return b"".join([chunk async for chunk in reader])


async def keys(store: BlobStore, prefix: str = "") -> set[str]:
    return {info.key async for info in store.list(prefix)}


def leftovers(store: BlobStore, s3_server: S3Server | None) -> list[str]:
    """Temporary files or pending multipart uploads a failed write left behind."""
    if isinstance(store, FilesystemBlobStore):
        return [
            name
            for _, _, files in os.walk(store.root)
            for name in files
            if not name.endswith(("@data", "@class"))
        ]
    assert isinstance(store, S3BlobStore)
    assert s3_server is not None
    uploads = s3_server.client.list_multipart_uploads(Bucket=store.bucket)
    return [upload["Key"] for upload in uploads.get("Uploads", [])]


async def test_round_trip_reports_size_and_sha256(blob_store: BlobStore) -> None:
    result = await blob_store.put("v1/ab/instance.dcm", stream(PAYLOAD))

    assert result.key == "v1/ab/instance.dcm"
    assert result.size == len(PAYLOAD)
    assert result.sha256 == hashlib.sha256(PAYLOAD).digest()
    assert await blob_store.read("v1/ab/instance.dcm") == PAYLOAD
    info = await blob_store.head("v1/ab/instance.dcm")
    assert info.key == "v1/ab/instance.dcm"
    assert info.size == len(PAYLOAD)
    assert info.modified is not None


async def test_fresh_round_trip(blob_store: BlobStore) -> None:
    result = await blob_store.put("v1/cd/fresh.dcm", stream(PAYLOAD), fresh=True)

    assert (result.size, result.sha256) == (len(PAYLOAD), hashlib.sha256(PAYLOAD).digest())
    assert await blob_store.read("v1/cd/fresh.dcm") == PAYLOAD
    assert await keys(blob_store) == {"v1/cd/fresh.dcm"}


async def test_fresh_object_is_written_in_place(tmp_path: Path) -> None:
    """No temporary file and no rename: the data file is at its key while it is written."""
    store = FilesystemBlobStore(tmp_path, read_chunk_bytes=64 * 1024)
    seen_during: list[list[str]] = []

    async def watched() -> AsyncIterator[bytes]:
        yield b"a" * (2 * MiB)
        seen_during.append(sorted(p.name for p in tmp_path.rglob("*") if p.is_file()))
        yield b"b"

    await store.put("v1/ef/placed.dcm", watched(), fresh=True)

    assert seen_during == [["placed.dcm@data"]]
    assert await store.read("v1/ef/placed.dcm") == b"a" * (2 * MiB) + b"b"


async def test_reader_streams_in_configured_chunks(blob_store: BlobStore) -> None:
    await blob_store.put("chunked", stream(PAYLOAD, 7_000))

    async with await blob_store.open("chunked") as reader:
        assert (reader.size, reader.start, reader.end, reader.length) == (
            len(PAYLOAD),
            0,
            len(PAYLOAD),
            len(PAYLOAD),
        )
        chunks = [chunk async for chunk in reader]
    assert b"".join(chunks) == PAYLOAD
    assert all(0 < len(chunk) <= CHUNK for chunk in chunks)
    assert len(chunks) >= len(PAYLOAD) // CHUNK


async def test_multipart_sized_object_round_trips(blob_store: BlobStore) -> None:
    block = hashlib.sha256(b"seed").digest() * (MiB // 32)
    parts = [bytes([n]) + block[1:] for n in range(12)]
    data = b"".join(parts) + b"tail"

    result = await blob_store.put("big/object", chunks_of(*parts, b"tail"))

    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).digest()
    assert (
        await read_back(blob_store, "big/object", PART - 3, PART + 3) == data[PART - 3 : PART + 3]
    )
    assert hashlib.sha256(await read_back(blob_store, "big/object")).digest() == result.sha256


async def test_empty_object(blob_store: BlobStore) -> None:
    result = await blob_store.put("empty", chunks_of())

    assert result.size == 0
    assert result.sha256 == hashlib.sha256(b"").digest()
    assert await blob_store.read("empty") == b""
    assert (await blob_store.head("empty")).size == 0
    async with await blob_store.open("empty", 0, 10) as reader:
        assert (reader.size, reader.length) == (0, 0)
        assert [chunk async for chunk in reader] == []


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (1000, None),
        (1000, 2000),
        (len(PAYLOAD) - 1, None),
        (len(PAYLOAD) - 1, len(PAYLOAD)),
        (0, 1),
        (0, len(PAYLOAD) + 500),
        (len(PAYLOAD), None),
        (500, 500),
    ],
    ids=[
        "start",
        "start-end",
        "last-byte",
        "last-byte-bounded",
        "first",
        "clamped",
        "at-end",
        "empty",
    ],
)
async def test_ranged_reads(blob_store: BlobStore, start: int, end: int | None) -> None:
    await blob_store.put("ranged", stream(PAYLOAD))
    expected = PAYLOAD[start:end]

    async with await blob_store.open("ranged", start, end) as reader:
        assert reader.size == len(PAYLOAD)
        assert reader.start == start
        assert reader.end == start + len(expected)
        assert reader.length == len(expected)
        data = b"".join([chunk async for chunk in reader])
    assert data == expected
    assert await blob_store.read("ranged", start, end) == expected


@pytest.mark.parametrize(
    ("start", "end"),
    [(len(PAYLOAD) + 1, None), (-1, None), (10, 5), (len(PAYLOAD) + 1, len(PAYLOAD) + 9)],
)
async def test_invalid_ranges_are_rejected(
    blob_store: BlobStore, start: int, end: int | None
) -> None:
    await blob_store.put("ranged", stream(PAYLOAD))

    with pytest.raises(InvalidRange) as caught:
        await blob_store.open("ranged", start, end)
    assert isinstance(caught.value, BadRequest)


async def test_missing_key(blob_store: BlobStore) -> None:
    with pytest.raises(BlobNotFound) as caught:
        await blob_store.open("no/such/key")
    assert isinstance(caught.value, NotFound)
    assert caught.value.status_code == 404
    with pytest.raises(BlobNotFound):
        await blob_store.open("no/such/key", 5, 10)
    with pytest.raises(BlobNotFound):
        await blob_store.head("no/such/key")
    with pytest.raises(BlobNotFound):
        await blob_store.read("no/such/key")
    with pytest.raises(BlobNotFound):
        await blob_store.set_storage_class("no/such/key", "STANDARD_IA")
    await blob_store.delete("no/such/key")


async def test_delete_is_idempotent(blob_store: BlobStore) -> None:
    await blob_store.put("doomed", chunks_of(b"bye"))

    await blob_store.delete("doomed")
    await blob_store.delete("doomed")

    with pytest.raises(BlobNotFound):
        await blob_store.head("doomed")
    assert await keys(blob_store) == set()


async def test_list_with_prefix(blob_store: BlobStore) -> None:
    contents = {
        "a": b"1",
        "a/1": b"22",
        "a/2": b"333",
        "a/b/3": b"4444",
        "ab/4": b"55555",
        "b/5": b"666666",
    }
    for key, data in contents.items():
        await blob_store.put(key, chunks_of(data))

    listed = {info.key: info.size async for info in blob_store.list()}
    assert listed == {key: len(data) for key, data in contents.items()}
    assert await keys(blob_store, "a/") == {"a/1", "a/2", "a/b/3"}
    assert await keys(blob_store, "a") == {"a", "a/1", "a/2", "a/b/3", "ab/4"}
    assert await keys(blob_store, "a/b") == {"a/b/3"}
    assert await keys(blob_store, "b/") == {"b/5"}
    assert await keys(blob_store, "zz") == set()


async def test_list_pages_through_many_objects(blob_store: BlobStore) -> None:
    names = {f"many/{n:04d}" for n in range(1100)}
    semaphore = asyncio.Semaphore(16)

    async def put(key: str) -> None:
        async with semaphore:
            await blob_store.put(key, chunks_of(key.encode()))

    await asyncio.gather(*(put(key) for key in names))

    assert await keys(blob_store, "many/") == names


async def test_overwrite_replaces_content(blob_store: BlobStore) -> None:
    await blob_store.put("same", chunks_of(b"first version, longer"))
    result = await blob_store.put("same", chunks_of(b"second"))

    assert result.size == 6
    assert await blob_store.read("same") == b"second"
    assert (await blob_store.head("same")).size == 6
    assert await keys(blob_store) == {"same"}


async def test_storage_class_is_recorded(blob_store: BlobStore) -> None:
    await blob_store.put("tiered", chunks_of(b"keep me"))

    await blob_store.set_storage_class("tiered", "STANDARD_IA")

    assert (await blob_store.head("tiered")).storage_class == "STANDARD_IA"
    assert [info.storage_class async for info in blob_store.list("tiered")] == ["STANDARD_IA"]
    assert await blob_store.read("tiered") == b"keep me"

    await blob_store.put("born-cold", chunks_of(b"x"), storage_class="STANDARD_IA")
    assert (await blob_store.head("born-cold")).storage_class == "STANDARD_IA"


@pytest.mark.parametrize("fresh", [False, True], ids=["replacing", "fresh"])
@pytest.mark.parametrize("fail_after", [MiB, 12 * MiB], ids=["single", "multipart"])
async def test_failed_put_leaves_nothing(
    blob_store: BlobStore, request: pytest.FixtureRequest, fail_after: int, fresh: bool
) -> None:
    s3_server = (
        request.getfixturevalue("s3_server") if isinstance(blob_store, S3BlobStore) else None
    )

    with pytest.raises(ConnectionResetError):
        await blob_store.put("broken/upload", failing(fail_after), fresh=fresh)

    with pytest.raises(BlobNotFound):
        await blob_store.head("broken/upload")
    assert await keys(blob_store) == set()
    assert leftovers(blob_store, s3_server) == []


@pytest.mark.parametrize("fresh", [False, True], ids=["replacing", "fresh"])
@pytest.mark.parametrize("block_after", [MiB, 12 * MiB], ids=["single", "multipart"])
async def test_cancelled_put_leaves_nothing(
    blob_store: BlobStore, request: pytest.FixtureRequest, block_after: int, fresh: bool
) -> None:
    s3_server = (
        request.getfixturevalue("s3_server") if isinstance(blob_store, S3BlobStore) else None
    )
    sent_enough = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        for _ in range(block_after // MiB):
            yield b"y" * MiB
        sent_enough.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(blob_store.put("cancelled/upload", stalled(), fresh=fresh))
    await sent_enough.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    with pytest.raises(BlobNotFound):
        await blob_store.head("cancelled/upload")
    assert leftovers(blob_store, s3_server) == []


async def test_failed_overwrite_keeps_previous_object(blob_store: BlobStore) -> None:
    await blob_store.put("kept", chunks_of(b"original"))

    with pytest.raises(ConnectionResetError):
        await blob_store.put("kept", failing(2 * MiB))

    assert await blob_store.read("kept") == b"original"


async def test_concurrent_puts(blob_store: BlobStore) -> None:
    distinct = {f"c/{n}": bytes([n]) * (20_000 + n) for n in range(8)}
    rivals = [bytes([200 + n]) * (30_000 + n) for n in range(4)]

    await asyncio.gather(
        *(blob_store.put(key, stream(data, 4096)) for key, data in distinct.items()),
        *(blob_store.put("c/shared", stream(data, 4096)) for data in rivals),
    )

    for key, data in distinct.items():
        assert await blob_store.read(key) == data
    assert await blob_store.read("c/shared") in rivals


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "a/../b",
        "..",
        ".",
        "a//b",
        "a/",
        ".hidden",
        "a/./b",
        "a b",
        "a\\b",
        "é",
        "a" * 513,
    ],
)
async def test_bad_keys_are_rejected(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        await blob_store.put(key, chunks_of(b"x"))
    with pytest.raises(ValueError, match="invalid blob key"):
        await blob_store.open(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        await blob_store.head(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        await blob_store.delete(key)
    assert await keys(blob_store) == set()


async def test_bad_prefix_is_rejected(blob_store: BlobStore) -> None:
    with pytest.raises(ValueError, match="invalid blob key prefix"):
        await keys(blob_store, "../")


async def test_ping(blob_store: BlobStore) -> None:
    await blob_store.ping()


async def test_unreachable_backend_is_dependency_unavailable(
    store_settings: Settings, tmp_path: Path
) -> None:
    storage = store_settings.storage
    if storage.backend == "s3":
        dead = storage.s3.model_copy(
            update={
                "endpoint_url": f"http://127.0.0.1:{free_port()}",
                "access_key_id": SecretStr("nobody"),
                "secret_access_key": SecretStr("nothing"),
            }
        )
        store: BlobStore = await S3BlobStore.connect(dead, read_chunk_bytes=CHUNK)
    else:
        store = FilesystemBlobStore(tmp_path / "unmounted", read_chunk_bytes=CHUNK)

    try:
        with pytest.raises(DependencyUnavailable) as caught:
            await store.ping()
        assert caught.value.status_code == 503
        with pytest.raises(DependencyUnavailable):
            await store.put("k", chunks_of(b"x"))
    finally:
        await store.aclose()


def counted_blocks(total: int, hasher: Any) -> AsyncIterator[bytes]:
    """``total`` bytes as 1 MiB blocks, each stamped with its index."""
    base = hashlib.sha256(b"block").digest() * (MiB // 32)

    async def generate() -> AsyncIterator[bytes]:
        for index in range(total // MiB):
            block = index.to_bytes(8, "big") + base[8:]
            hasher.update(block)
            yield block

    return generate()


class PeakRss:
    """Tracks the largest resident set size seen since creation."""

    def __init__(self) -> None:
        gc.collect()
        self._process = psutil.Process()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline

    def sample(self) -> None:
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


async def sampled(source: AsyncIterator[bytes], rss: PeakRss) -> AsyncIterator[bytes]:
    async for chunk in source:
        rss.sample()
        yield chunk


@pytest.fixture(params=["filesystem", "s3"])
async def default_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """A store with default part and chunk sizes, as deployed."""
    s3 = request.getfixturevalue("s3_settings") if request.param == "s3" else None
    settings = settings_for(request.param, tmp_path, s3)
    settings.storage.read_chunk_bytes = MiB
    async with open_blob_store(settings) as store:
        yield store


@pytest.mark.timeout(900)
async def test_one_gib_streams_with_bounded_memory(default_store: BlobStore) -> None:
    written = hashlib.sha256()
    rss = PeakRss()

    result = await default_store.put("large/1gib", sampled(counted_blocks(GIB, written), rss))

    assert result.size == GIB
    assert result.sha256 == written.digest()
    read = hashlib.sha256()
    total = 0
    async with await default_store.open("large/1gib") as reader:
        assert reader.length == GIB
        async for chunk in reader:
            read.update(chunk)
            total += len(chunk)
            rss.sample()
    assert total == GIB
    assert read.digest() == written.digest()
    assert rss.growth < RSS_BUDGET, f"RSS grew by {rss.growth / MiB:.0f} MiB"
