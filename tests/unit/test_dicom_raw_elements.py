"""The header reader gives exactly what pydicom's ``read_dataset`` gives."""

from __future__ import annotations

import struct
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_dataset

from skypacs.dicom.raw_elements import explicit_little_elements, read_data_set
from skypacs.dicom.transfer_syntaxes import get_transfer_syntax
from tests.unit.test_dicom_scanner_corpus import PART10

pytestmark = pytest.mark.unit


def _data_set(path: Path) -> tuple[bytes, bool, bool] | None:
    """The encoded data set after the file meta, its VR encoding and byte order;
    None when it is deflated (the scanner inflates those before reading them)."""
    with path.open("rb") as fp:
        fp.seek(132)
        meta = _read_file_meta_info(fp)
        data = fp.read()
    syntax = get_transfer_syntax(str(meta.TransferSyntaxUID))
    if syntax is None or syntax.is_deflated:
        return None
    return data, syntax.is_implicit_vr, syntax.is_little_endian


PLAIN = [path for path in PART10 if _data_set(path) is not None]


def test_only_deflated_files_are_left_out() -> None:
    assert len(PART10) - len(PLAIN) == 1


def _raw(ds: Dataset) -> dict[int, tuple[object, ...]]:
    return {int(tag): tuple(element) for tag, element in ds._dict.items()}


def _encoding(ds: Dataset) -> tuple[object, ...]:
    return (ds.original_encoding, ds.original_character_set)


@pytest.mark.parametrize("path", PLAIN, ids=lambda p: p.name)
def test_same_raw_elements_and_encoding_as_pydicom(path: Path) -> None:
    read = _data_set(path)
    assert read is not None
    data, implicit, little = read
    expected = read_dataset(BytesIO(data), implicit, little)
    got = read_data_set(data, implicit=implicit, little=little)
    assert _raw(got) == _raw(expected)
    assert _encoding(got) == _encoding(expected)


def test_the_common_case_is_read_without_pydicom() -> None:
    ct = next(path for path in PLAIN if path.name == "CT_small.dcm")
    read = _data_set(ct)
    assert read is not None
    data, implicit, little = read
    assert (implicit, little) == (False, True)
    elements = explicit_little_elements(data)
    assert elements is not None
    pixel = elements[0x7FE00010]
    assert isinstance(pixel, RawDataElement)
    assert (pixel.VR, pixel.length) == ("OW", 128 * 128 * 2)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    group, number = tag >> 16, tag & 0xFFFF
    if vr in (b"OB", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHL", group, number, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value


@pytest.mark.parametrize(
    "data",
    [
        _element(0x00100010, b"PN", b"DOE^JOHN") + b"\x10\x00\x20",  # truncated header
        _element(0x00100010, b"PN", b"DOE^JOHN")[:-2],  # truncated value
        struct.pack("<HH2sHL", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF),  # undefined length
        struct.pack("<HH2sH", 0x0010, 0x0010, b"ZZ", 0),  # not a VR
        struct.pack("<HHL", 0xFFFE, 0xE00D, 0),  # a delimiter at the top level
    ],
    ids=["short-header", "short-value", "undefined-length", "unknown-vr", "delimiter"],
)
def test_anything_unusual_is_left_to_pydicom(data: bytes) -> None:
    assert explicit_little_elements(data) is None


def test_empty_values_are_what_pydicom_makes_of_them() -> None:
    data = (
        _element(0x00080005, b"CS", b"ISO_IR 192")
        + _element(0x00100010, b"PN", b"")
        + _element(0x00280010, b"US", b"")
        + _element(0x00420011, b"OB", b"")
    )
    expected = read_dataset(BytesIO(data), False, True)
    got = read_data_set(data, implicit=False, little=True)
    assert _raw(got) == _raw(expected)
    assert _encoding(got) == _encoding(expected)
    assert got.original_character_set == ["UTF8"]
