"""Values decoded from raw bytes equal pydicom's decoding, over every file pydicom ships.

The reference is the same encoder run on a data set whose elements pydicom has
already converted: :func:`plain_element` then declines every element, so the
output is pydicom's alone.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_files
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from skypacs.dicom.attributes import INTEGER_ATTRIBUTES, TEXT_ATTRIBUTES, text_attribute
from skypacs.dicom.dicom_json import dataset_to_json
from skypacs.dicom.pixel_layout import int_attribute
from skypacs.dicom.plain_values import keyword_tag, plain_element, plain_json

pytestmark = pytest.mark.unit

TEXT_KEYWORDS = [*TEXT_ATTRIBUTES.values(), "StudyInstanceUID", "SOPInstanceUID", "ImageType"]
INTEGER_KEYWORDS = [*INTEGER_ATTRIBUTES.values(), "Rows", "Columns", "BitsAllocated"]


def _readable() -> list[Path]:
    files = {Path(f) for f in [*get_testdata_files(), *get_charset_files("*.dcm")]}
    readable = []
    for path in sorted(files, key=lambda p: p.name):
        if not os.path.isfile(path):
            continue
        try:
            _read(path)
        except Exception:
            continue
        readable.append(path)
    return readable


def _read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def _converted(path: Path) -> Dataset:
    """The data set with every element, nested ones too, converted by pydicom."""
    ds = _read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in ds.iterall():
            pass
    return ds


def _json(ds: Dataset) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dataset_to_json(ds, bulk_tags=(), bulk_threshold=64)


CORPUS = _readable()


def test_corpus_is_large() -> None:
    assert len(CORPUS) > 150


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_json_equals_pydicoms(path: Path) -> None:
    assert _json(_read(path)) == _json(_converted(path))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_index_attributes_equal_pydicoms(path: Path) -> None:
    raw, converted = _read(path), _converted(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword in TEXT_KEYWORDS:
            assert text_attribute(raw, keyword) == text_attribute(converted, keyword), keyword
        for keyword in INTEGER_KEYWORDS:
            assert int_attribute(raw, keyword) == int_attribute(converted, keyword), keyword


def test_plain_ascii_elements_are_decoded_here() -> None:
    ds = _read(Path(get_testdata_files("CT_small.dcm")[0]))
    decoded = {
        keyword: plain_element(ds, keyword_tag(keyword))
        for keyword in ("PatientName", "ImageType", "SliceThickness", "Rows", "SOPInstanceUID")
    }
    assert decoded["PatientName"] == ("PN", ["CompressedSamples^CT1"])
    assert decoded["ImageType"] == ("CS", ["ORIGINAL", "PRIMARY", "AXIAL"])
    assert decoded["SliceThickness"] == ("DS", [5.0])
    assert decoded["Rows"] == ("US", [128])
    assert decoded["SOPInstanceUID"] is not None


def _raw(tag: int, vr: str | None, value: bytes) -> Dataset:
    ds = Dataset()
    element = RawDataElement(Tag(tag), vr, len(value), value, 0, vr is None, True)
    ds._dict[Tag(tag)] = element  # as pydicom's reader leaves it
    return ds


@pytest.mark.parametrize(
    ("tag", "vr", "value"),
    [
        (0x00100010, "PN", "Yamada^Tarou=山田^太郎".encode()),  # not ASCII
        (0x00100010, "PN", b"\x1b$BX\x1b(B"),  # an escape sequence
        (0x00100010, "PN", b"A^B\\"),  # an empty name among several
        (0x00200013, "IS", b"1.0"),  # not an integer string
        (0x00280030, "DS", b"1.5\\"),  # an empty number among several
        (0x00280030, "DS", b"NaN"),
        (0x00280010, "US", b"\x01\x00\x02"),  # a length that is no multiple of 2
        (0x00090010, None, b"PRIVATE"),  # private, implicit VR
        (0x00280106, None, b"\x00\x00"),  # implicit and ambiguous (US or SS)
    ],
)
def test_odd_values_are_left_to_pydicom(tag: int, vr: str | None, value: bytes) -> None:
    assert plain_element(_raw(tag, vr, value), Tag(tag)) is None


def test_empty_and_padded_values() -> None:
    assert plain_element(_raw(0x00080060, "CS", b""), Tag(0x00080060)) == ("CS", [])
    assert plain_element(_raw(0x00200013, "IS", b" 7 "), Tag(0x00200013)) == ("IS", [7])
    assert plain_element(_raw(0x00080054, "AE", b" A \\B "), Tag(0x00080054)) == ("AE", ["A", "B"])
    assert plain_json("CS", ["A", ""]) == {"vr": "CS", "Value": ["A", None]}
    assert plain_json("PN", ["A^B==C"]) == {
        "vr": "PN",
        "Value": [{"Alphabetic": "A^B", "Ideographic": "", "Phonetic": "C"}],
    }
