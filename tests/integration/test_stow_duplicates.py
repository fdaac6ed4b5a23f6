"""Storing a SOP Instance UID again: idempotent retries and the duplicate policies."""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.stow_helpers import (
    BACKENDS,
    Stow,
    as_stored,
    ct_small,
    failures,
    make_settings,
    open_stow,
    part10,
    referenced_uids,
    storage_for,
    with_new_uids,
)

pytestmark = pytest.mark.integration

DUPLICATE_SOP_INSTANCE = 0x0111
STORED = "org.skypacs.instance.stored"
UPDATED = "org.skypacs.instance.updated"

StowFactory = Callable[..., AbstractAsyncContextManager[Stow]]


@pytest.fixture(params=BACKENDS)
def stow_with(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> StowFactory:
    storage = storage_for(request, request.param)

    def factory(**stow: Any) -> AbstractAsyncContextManager[Stow]:
        return open_stow(make_settings(pg_dsn, tmp_path, storage, **stow))

    return factory


def _two_versions() -> tuple[str, bytes, bytes]:
    """One SOP Instance UID, two different Part 10 files."""
    first = with_new_uids(ct_small())
    second = copy.deepcopy(first)
    second.PatientName = "Corrected^Name"
    return str(first.SOPInstanceUID), part10(first), part10(second)


@pytest.mark.parametrize("policy", ["reject", "overwrite", "keep"])
async def test_identical_bytes_twice_store_once(stow_with: StowFactory, policy: str) -> None:
    uid, data, _other = _two_versions()
    async with stow_with(duplicate_policy=policy) as stow:
        for _ in range(2):
            response = await stow.post(data, "application/dicom")
            assert response.status_code == 200
            assert referenced_uids(response) == [uid]
        assert await stow.row_counts() == {"stored": 1}
        assert await stow.event_types() == [STORED]
        assert len(await stow.blob_keys()) == 1
        assert await stow.stored_blob(uid) == as_stored(data)


async def test_identical_bytes_twice_in_one_request(stow_with: StowFactory) -> None:
    uid, data, _other = _two_versions()
    async with stow_with() as stow:
        response = await stow.post_instances([data, data])
        assert response.status_code == 200
        assert referenced_uids(response) == [uid, uid]
        assert await stow.row_counts() == {"stored": 1}
        assert await stow.event_types() == [STORED]
        assert len(await stow.blob_keys()) == 1


async def test_reject_keeps_the_original(stow_with: StowFactory) -> None:
    uid, original, changed = _two_versions()
    async with stow_with(duplicate_policy="reject") as stow:
        assert (await stow.post(original, "application/dicom")).status_code == 200
        response = await stow.post(changed, "application/dicom")
        assert response.status_code == 409
        assert failures(response) == [DUPLICATE_SOP_INSTANCE]
        assert await stow.stored_blob(uid) == as_stored(original)
        assert await stow.row_counts() == {"stored": 1}
        assert await stow.event_types() == [STORED]
        assert len(await stow.blob_keys()) == 1


async def test_overwrite_serves_the_new_bytes(stow_with: StowFactory) -> None:
    uid, original, changed = _two_versions()
    async with stow_with(duplicate_policy="overwrite") as stow:
        assert (await stow.post(original, "application/dicom")).status_code == 200
        old_keys = await stow.blob_keys()
        response = await stow.post(changed, "application/dicom")
        assert response.status_code == 200
        assert referenced_uids(response) == [uid]
        assert await stow.stored_blob(uid) == as_stored(changed)
        assert await stow.event_types() == [STORED, UPDATED]
        assert await stow.row_counts() == {"stored": 1}
        new_keys = await stow.blob_keys()
        assert len(new_keys) == 1
        assert set(new_keys).isdisjoint(old_keys)
        stats = await stow.runtime.index.pool.fetchrow(
            "SELECT num_instances, num_series FROM studies"
        )
        assert stats is not None
        assert (stats["num_instances"], stats["num_series"]) == (1, 1)


async def test_keep_answers_200_and_keeps_the_original(stow_with: StowFactory) -> None:
    uid, original, changed = _two_versions()
    async with stow_with(duplicate_policy="keep") as stow:
        assert (await stow.post(original, "application/dicom")).status_code == 200
        response = await stow.post(changed, "application/dicom")
        assert response.status_code == 200
        assert referenced_uids(response) == [uid]
        assert await stow.stored_blob(uid) == as_stored(original)
        assert await stow.row_counts() == {"stored": 1}
        assert await stow.event_types() == [STORED]
        assert len(await stow.blob_keys()) == 1
