"""The thumbnail cache in the real blob store: filled on first use, dropped on change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skypacs.services.wado.thumbnail import CACHE_PREFIX
from tests.integration.stow_helpers import make_settings, part10, synthesize_study
from tests.integration.wado_helpers import DICOMWEB, Archive, open_archive

pytestmark = pytest.mark.integration


@pytest.fixture
async def archive(pg_dsn: str, tmp_path: Path) -> AsyncIterator[Archive]:
    storage = {"backend": "filesystem", "filesystem": {"fsync": False}}
    async with open_archive(make_settings(pg_dsn, tmp_path, storage)) as opened:
        yield opened


async def _cached_keys(archive: Archive) -> list[str]:
    return sorted([info.key async for info in archive.runtime.blobs.list(CACHE_PREFIX + "/")])


async def test_thumbnail_is_cached_then_replaced_when_the_series_changes(archive: Archive) -> None:
    study, instances = synthesize_study(3)
    await archive.store([part10(ds) for ds in instances[:2]])
    series = f"/studies/{study}/series/{instances[0].SeriesInstanceUID}/thumbnail"
    first = await archive.get(series)
    assert first.status_code == 200
    keys = await _cached_keys(archive)
    assert len(keys) == 1
    read_before = archive.blobs.bytes_read
    again = await archive.get(series)
    assert again.content == first.content
    assert archive.blobs.bytes_read - read_before == len(first.content)  # only the cached image

    await archive.store([part10(instances[2])])
    await archive.get(series)
    # stale entries are removed by a background task: wait for it, not for a time
    app = archive.wado._transport.app  # type: ignore[attr-defined]
    await app.state.wado_state.drain()
    replaced = await _cached_keys(archive)
    assert len(replaced) == 1
    assert replaced != keys


async def test_deleting_a_series_removes_its_cached_thumbnails(archive: Archive) -> None:
    study, instances = synthesize_study(2)
    await archive.store([part10(ds) for ds in instances])
    series = f"/studies/{study}/series/{instances[0].SeriesInstanceUID}"
    assert (await archive.get(series + "/thumbnail")).status_code == 200
    assert len(await _cached_keys(archive)) == 1

    deleted = await archive.wado.delete(f"{DICOMWEB}{series}")
    assert deleted.status_code == 204
    app = archive.wado._transport.app  # type: ignore[attr-defined]
    await app.state.wado_state.drain()
    assert await _cached_keys(archive) == []
    assert (await archive.get(series + "/thumbnail")).status_code == 404
