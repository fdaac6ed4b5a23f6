"""Filesystem puts: directories made on demand, class labels only where they can be."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skypacs.errors import DependencyUnavailable
from skypacs.storage.filesystem import CLASS_SUFFIX, FilesystemBlobStore

pytestmark = pytest.mark.unit


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _store(root: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(root, fsync=True, read_chunk_bytes=64 * 1024)


async def test_put_creates_every_missing_directory(tmp_path: Path) -> None:
    store = _store(tmp_path)
    await store.put("v1/ab/cd/1.dcm", _body(b"first"))
    await store.put("v1/ab/ce/2.dcm", _body(b"second"))
    await store.put("v1/ab/ce/3.dcm", _body(b"third"))
    assert await store.read("v1/ab/cd/1.dcm") == b"first"
    assert await store.read("v1/ab/ce/2.dcm") == b"second"
    assert sorted([info.key async for info in store.list("v1/")]) == [
        "v1/ab/cd/1.dcm",
        "v1/ab/ce/2.dcm",
        "v1/ab/ce/3.dcm",
    ]


async def test_put_without_class_drops_a_stale_label(tmp_path: Path) -> None:
    """A label left without its object (a crash inside delete) does not stick to a new put."""
    store = _store(tmp_path)
    await store.put("v1/ab/cd/1.dcm", _body(b"old"), storage_class="COLD")
    (tmp_path / "v1/ab/cd/1.dcm@data").unlink()
    assert (tmp_path / f"v1/ab/cd/1.dcm{CLASS_SUFFIX}").exists()
    await store.put("v1/ab/cd/1.dcm", _body(b"new"))
    info = await store.head("v1/ab/cd/1.dcm")
    assert (info.size, info.storage_class) == (3, None)


async def test_overwrite_keeps_or_sets_the_class_it_is_given(tmp_path: Path) -> None:
    store = _store(tmp_path)
    await store.put("v1/ab/cd/1.dcm", _body(b"one"), storage_class="COLD")
    await store.put("v1/ab/cd/1.dcm", _body(b"two"))
    assert (await store.head("v1/ab/cd/1.dcm")).storage_class is None
    await store.put("v1/ab/cd/1.dcm", _body(b"three"), storage_class="WARM")
    assert (await store.head("v1/ab/cd/1.dcm")).storage_class == "WARM"
    assert await store.read("v1/ab/cd/1.dcm") == b"three"


async def test_put_into_a_missing_root_is_an_outage(tmp_path: Path) -> None:
    store = _store(tmp_path / "gone")
    with pytest.raises(DependencyUnavailable):
        await store.put("v1/ab/cd/1.dcm", _body(b"data"))
    assert not (tmp_path / "gone").exists()
