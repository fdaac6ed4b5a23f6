"""The Part 10 scanner over every file pydicom ships, in many chunkings."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_files
from pydicom.encaps import generate_frames

from skypacs.dicom.parse_errors import DicomParseError
from skypacs.dicom.part10_scanner import ScanResult
from tests.unit.dicom_samples import read_ranges, scan

pytestmark = pytest.mark.unit

PIXEL_KEYS = {"7FE00010", "7FE00008", "7FE00009"}
# Files pydicom ships as broken on purpose: the scanner must refuse them.
BROKEN = {"MR_truncated.dcm", "rtplan_truncated.dcm", "meta_missing_tsyntax.dcm"}
CHUNK_1_FILES = {"MR_small_RLE.dcm", "image_dfl.dcm", "SC_rgb_jpeg.dcm", "chrH31.dcm"}


def _corpus() -> list[Path]:
    files = [*get_testdata_files(), *get_charset_files("*.dcm")]
    return sorted({Path(f) for f in files if os.path.isfile(f)}, key=lambda p: p.name)


CORPUS = _corpus()
PART10 = [p for p in CORPUS if p.read_bytes()[128:132] == b"DICM" and p.name not in BROKEN]
NOT_PART10 = [p for p in CORPUS if p.read_bytes()[128:132] != b"DICM"]


def _quiet_read(path: Path, **kwargs: object) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, **kwargs)


def test_corpus_is_large() -> None:
    assert len(PART10) > 150
    assert len(NOT_PART10) >= 5


@pytest.mark.parametrize("path", PART10, ids=lambda p: p.name)
def test_stored_bytes_and_result_do_not_depend_on_chunking(path: Path) -> None:
    data = path.read_bytes()
    expected = bytes(128) + data[128:]
    stored, whole = scan(data)
    assert stored == expected
    sizes = [7, 4096] + ([1] if path.name in CHUNK_1_FILES else [])
    for size in sizes:
        stored_chunked, chunked = scan(data, size)
        assert stored_chunked == expected
        assert chunked.size == len(data)
        assert chunked.pixel_data == whole.pixel_data
        assert chunked.bulk_ranges == whole.bulk_ranges
        assert chunked.dataset == whole.dataset


def _elements(ds: pydicom.Dataset, skip: set[str], below: int | None) -> dict[str, object]:
    return {
        f"{elem.tag:08X}": elem
        for elem in ds
        if f"{elem.tag:08X}" not in skip and (below is None or elem.tag < below)
    }


@pytest.mark.parametrize("path", PART10, ids=lambda p: p.name)
def test_dataset_matches_pydicom(path: Path) -> None:
    _, result = scan(path.read_bytes())
    reference = _quiet_read(path, stop_before_pixels=True)
    skip = set(result.bulk_ranges) | PIXEL_KEYS
    pixel_tag = int(result.pixel_data.tag, 16) if result.pixel_data else None
    assert _elements(result.dataset, skip, pixel_tag) == _elements(reference, skip, None)
    assert result.file_meta == reference.file_meta
    assert result.transfer_syntax_uid == reference.file_meta.TransferSyntaxUID
    if pixel_tag is not None:
        full = _quiet_read(path)
        trailing = {k: v for k, v in _elements(full, skip, None).items() if int(k, 16) > pixel_tag}
        ours = {
            k: v for k, v in _elements(result.dataset, skip, None).items() if int(k, 16) > pixel_tag
        }
        assert ours == trailing


@pytest.mark.parametrize("path", PART10, ids=lambda p: p.name)
def test_bulk_ranges_point_at_the_values(path: Path) -> None:
    data = path.read_bytes()
    _, result = scan(data)
    if not result.bulk_ranges:
        return
    full = _quiet_read(path)
    for key, (offset, length) in result.bulk_ranges.items():
        assert data[offset : offset + length] == full[int(key, 16)].value
        assert not result.dataset[int(key, 16)].value


def _expected_frames(full: pydicom.Dataset, result: ScanResult) -> list[bytes]:
    layout = result.pixel_data
    assert layout is not None
    assert layout.frames is not None
    value = full[int(layout.tag, 16)].value
    if layout.is_encapsulated:
        return list(generate_frames(value, number_of_frames=layout.number_of_frames))
    size = layout.frames[0][0][1] if layout.frames else 0
    return [value[k * size : (k + 1) * size] for k in range(layout.number_of_frames)]


FRAMED = [p for p in PART10 if p.name not in {"image_dfl.dcm", "nested_priv_SQ.dcm"}]


@pytest.mark.parametrize("path", FRAMED, ids=lambda p: p.name)
def test_frames_from_recorded_ranges_equal_pydicom_frames(path: Path) -> None:
    data = path.read_bytes()
    _, result = scan(data)
    layout = result.pixel_data
    if layout is None:
        return
    assert layout.frames is not None, "frame boundaries should be known"
    assert len(layout.frames) == layout.number_of_frames
    full = _quiet_read(path)
    got = [read_ranges(data, frame) for frame in layout.frames]
    assert got == _expected_frames(full, result)
    _check_native_pixels(full, result, got)


def _check_native_pixels(full: pydicom.Dataset, result: ScanResult, frames: list[bytes]) -> None:
    """For plain little-endian grayscale frames, the bytes are the pixels."""
    layout = result.pixel_data
    assert layout is not None
    simple = (
        not layout.is_encapsulated
        and result.transfer_syntax_uid != pydicom.uid.ExplicitVRBigEndian
        and full.get("SamplesPerPixel", 1) == 1
        and full.get("BitsAllocated") in (8, 16)
        and full.get("BitsStored") == full.get("BitsAllocated")
        and layout.tag == "7FE00010"
    )
    if not simple:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = full.pixel_array
    except Exception:
        return  # pydicom cannot decode it either
    array = array.reshape((layout.number_of_frames, -1))
    for index, frame in enumerate(frames):
        assert np.array_equal(np.frombuffer(frame, dtype=array.dtype), array[index])


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_are_refused(name: str) -> None:
    path = next(p for p in CORPUS if p.name == name)
    with pytest.raises(DicomParseError) as caught:
        scan(path.read_bytes(), 4096)
    assert caught.value.failure_reason == 0xC000


@pytest.mark.parametrize("path", NOT_PART10, ids=lambda p: p.name)
def test_files_without_part10_meta_are_refused(path: Path) -> None:
    with pytest.raises(DicomParseError) as caught:
        scan(path.read_bytes())
    assert caught.value.failure_reason == 0xC000
    assert caught.value.status_code == 400
