"""Every pydicom test file through STOW-RS, on Postgres and both blob backends.

Valid Part 10 files are stored and served back byte for byte (preamble zeroed);
files that are not valid Part 10 fail with 0xC000, and valid files without the
identifying UIDs (SOP Class/Instance, Study, Series: Type 1, PS3.3 C.12.1 and
C.7.2/C.7.3) fail with 0xA900; failures leave nothing behind.
Several pydicom files share a SOP Instance UID with different bytes, so the
archive runs with the ``overwrite`` duplicate policy and each blob is checked
right after its own store: the instance just sent is the one served.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_files

from tests.integration.stow_helpers import (
    BACKENDS,
    Stow,
    as_stored,
    failures,
    make_settings,
    open_stow,
    referenced_uids,
    storage_for,
)

pytestmark = pytest.mark.integration

#: Files pydicom ships broken on purpose (DICM present, but not a valid Part 10 file).
BROKEN = {"MR_truncated.dcm", "rtplan_truncated.dcm", "meta_missing_tsyntax.dcm"}
CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH_SOP_CLASS = 0xA900
IDENTIFYING = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _read_header(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True)


def _identified(path: Path) -> bool:
    header = _read_header(path)
    return all(header.get(keyword) for keyword in IDENTIFYING)


def _corpus() -> list[Path]:
    files = [*get_testdata_files("*.dcm"), *get_charset_files("*.dcm")]
    return sorted({Path(f) for f in files if os.path.isfile(f)}, key=lambda p: p.name)


CORPUS = _corpus()
WELL_FORMED = [p for p in CORPUS if p.read_bytes()[128:132] == b"DICM" and p.name not in BROKEN]
PART10 = [p for p in WELL_FORMED if _identified(p)]
UNIDENTIFIED = [p for p in WELL_FORMED if not _identified(p)]
INVALID = [p for p in CORPUS if p.read_bytes()[128:132] != b"DICM" or p.name in BROKEN]


def _sop_instance_uid(path: Path) -> str:
    return str(_read_header(path).SOPInstanceUID)


async def _check_valid(stow: Stow, path: Path) -> str | None:
    """Store ``path``; a description of what went wrong, or None."""
    data = path.read_bytes()
    uid = _sop_instance_uid(path)
    response = await stow.post(data, "application/dicom")
    if response.status_code != 200:
        return f"{path.name}: status {response.status_code} {response.text[:200]}"
    if referenced_uids(response) != [uid]:
        return f"{path.name}: referenced {referenced_uids(response)}"
    if await stow.stored_blob(uid) != as_stored(data):
        return f"{path.name}: stored bytes differ"
    return None


async def _check_refused(stow: Stow, path: Path, reason: int) -> str | None:
    before = await stow.row_counts(), sorted(await stow.blob_keys())
    response = await stow.post(path.read_bytes(), "application/dicom")
    if response.status_code != 409 or failures(response) != [reason]:
        return f"{path.name}: {response.status_code} {response.text[:200]}"
    after = await stow.row_counts(), sorted(await stow.blob_keys())
    return None if after == before else f"{path.name}: left {after} (before {before})"


def test_corpus_is_the_expected_size() -> None:
    assert len(PART10) >= 70
    assert {p.name for p in INVALID} >= BROKEN
    assert len(INVALID) >= 7
    assert len(UNIDENTIFIED) >= 5


def test_corpus_holds_different_files_under_one_sop_instance_uid() -> None:
    by_uid: dict[str, set[bytes]] = {}
    for path in PART10:
        by_uid.setdefault(_sop_instance_uid(path), set()).add(as_stored(path.read_bytes()))
    assert any(len(versions) > 1 for versions in by_uid.values())


@pytest.mark.parametrize("backend", BACKENDS)
async def test_every_part10_file_round_trips(
    backend: str, request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path
) -> None:
    settings = make_settings(
        pg_dsn, tmp_path, storage_for(request, backend), duplicate_policy="overwrite"
    )
    async with open_stow(settings) as stow:
        problems = [p for path in PART10 if (p := await _check_valid(stow, path))]
        assert problems == []
        unique = {_sop_instance_uid(p) for p in PART10}
        counts = await stow.row_counts()
        assert counts == {"stored": len(unique)}
        assert len(await stow.blob_keys()) == len(unique)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_refused_files_get_their_failure_reason_and_leave_nothing(
    backend: str, request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path
) -> None:
    settings = make_settings(pg_dsn, tmp_path, storage_for(request, backend))
    expected = [(p, CANNOT_UNDERSTAND) for p in INVALID]
    expected += [(p, DOES_NOT_MATCH_SOP_CLASS) for p in UNIDENTIFIED]
    async with open_stow(settings) as stow:
        problems = [p for path, code in expected if (p := await _check_refused(stow, path, code))]
        assert problems == []
        await stow.assert_nothing_stored()
