"""Every pydicom test file: stored through STOW, retrieved as stored and as Explicit VR LE."""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_files

from tests.integration.stow_helpers import as_stored
from tests.integration.wado_helpers import (
    Archive,
    open_archive,
    s3_archive_settings,
    split_multipart,
)

pytestmark = pytest.mark.integration

BROKEN = {"MR_truncated.dcm", "rtplan_truncated.dcm", "meta_missing_tsyntax.dcm"}
IDENTIFYING = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _header(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True)


def _corpus() -> list[Path]:
    files = {Path(f) for f in [*get_testdata_files("*.dcm"), *get_charset_files("*.dcm")]}
    valid = [
        p
        for p in files
        if os.path.isfile(p) and p.read_bytes()[128:132] == b"DICM" and p.name not in BROKEN
    ]
    return sorted(
        (p for p in valid if all(_header(p).get(k) for k in IDENTIFYING)), key=lambda p: p.name
    )


def _pixels(data: bytes) -> np.ndarray | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.asarray(pydicom.dcmread(BytesIO(data)).pixel_array)
        except Exception:
            return None


@pytest.fixture
async def archive(
    request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path
) -> AsyncIterator[Archive]:
    async with open_archive(s3_archive_settings(request, pg_dsn, tmp_path)) as opened:
        yield opened


async def _check(archive: Archive, path: Path) -> str | None:
    data = path.read_bytes()
    header = _header(path)
    await archive.store([data])
    url = (
        f"/studies/{header.StudyInstanceUID}/series/{header.SeriesInstanceUID}"
        f"/instances/{header.SOPInstanceUID}"
    )
    stored = await archive.get(url, Accept=AS_STORED)
    if stored.status_code != 200 or split_multipart(stored)[0][1] != as_stored(data):
        return f"{path.name}: as stored differs ({stored.status_code})"
    original = _pixels(data)
    if original is None:
        return None
    default = await archive.get(url)
    if default.status_code != 200:
        return f"{path.name}: default retrieve {default.status_code} {default.text[:120]}"
    body = split_multipart(default)[0][1]
    served = pydicom.dcmread(BytesIO(body))
    if served.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.1":
        return f"{path.name}: served in {served.file_meta.TransferSyntaxUID}"
    pixels = _pixels(body)
    if pixels is None or not np.array_equal(pixels, original):
        return f"{path.name}: decoded pixels differ"
    return None


async def test_every_pydicom_file_round_trips(archive: Archive) -> None:
    problems = [problem for path in _corpus() if (problem := await _check(archive, path))]
    assert problems == []
