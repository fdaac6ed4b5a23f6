"""DICOM JSON encoding of scanned data sets (PS3.18 F.2)."""

from __future__ import annotations

import base64

import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from skypacs.dicom.dicom_json import dataset_to_json, resolve_vr
from tests.unit.dicom_samples import image_dataset, part10_bytes, scan

pytestmark = pytest.mark.unit


def _scanned_json(data: bytes, threshold: int = 1024) -> dict[str, object]:
    _, result = scan(data, 4096, bulk_threshold=threshold)
    return dataset_to_json(result.dataset, bulk_tags=result.bulk_ranges, bulk_threshold=threshold)


def _charset_file(name: str) -> bytes:
    with open(get_charset_files(name)[0], "rb") as handle:
        return handle.read()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chrH31.dcm", {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}),
        ("chrX1.dcm", {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東"}),
        ("chrRuss.dcm", {"Alphabetic": "Люкceмбypг"}),  # noqa: RUF001
        ("chrGreek.dcm", {"Alphabetic": "Διονυσιος"}),
        ("chrKoreanMulti.dcm", {"Alphabetic": "김희중"}),
    ],
)
def test_names_are_unicode_under_their_character_set(name: str, expected: dict[str, str]) -> None:
    encoded = _scanned_json(_charset_file(name))
    person = encoded["00100010"]
    assert isinstance(person, dict)
    value = person["Value"][0]
    for group, text in expected.items():
        assert value[group] == text


def test_pixel_data_and_bulk_values_become_relative_references() -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    with open(path, "rb") as handle:
        encoded = _scanned_json(handle.read())
    assert encoded["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}
    assert encoded["00431029"] == {"vr": "OB", "BulkDataURI": "bulk/00431029"}
    assert encoded["00280030"] == {"vr": "DS", "Value": [0.661468, 0.661468]}
    assert "00020010" not in encoded


def test_small_binary_values_are_inline_and_nested_large_ones_referenced() -> None:
    ds = image_dataset()
    ds.add_new(0x00091010, "OB", b"\x01\x02\x03\x04")
    icon = Dataset()
    icon.PixelData = b"\x07" * 64
    icon["PixelData"].VR = "OB"
    ds.IconImageSequence = Sequence([icon])
    encoded = dataset_to_json(ds, bulk_tags=[], bulk_threshold=16)
    assert encoded["00091010"] == {
        "vr": "OB",
        "InlineBinary": base64.b64encode(b"\x01\x02\x03\x04").decode(),
    }
    item = encoded["00880200"]["Value"][0]
    assert item["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulk/00880200/0/7FE00010"}


def _raw(tag: int, vr: str, value: bytes) -> RawDataElement:
    return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def test_empty_and_malformed_values_never_give_null_values() -> None:
    ds = Dataset()
    ds[0x00080060] = _raw(0x00080060, "CS", b"CT\\")
    ds[0x00100010] = _raw(0x00100010, "PN", b"")
    ds[0x00200011] = _raw(0x00200011, "IS", b"")
    ds[0x00200013] = _raw(0x00200013, "IS", b"abc ")
    ds[0x00280008] = _raw(0x00280008, "IS", b"3 ")
    ds.ReferencedSeriesSequence = Sequence([])
    encoded = dataset_to_json(ds, bulk_tags=[], bulk_threshold=1024)
    assert encoded["00080060"] == {"vr": "CS", "Value": ["CT", None]}
    assert encoded["00100010"] == {"vr": "PN"}
    assert encoded["00200011"] == {"vr": "IS"}
    assert encoded["00200013"] == {"vr": "IS"}
    assert encoded["00280008"] == {"vr": "IS", "Value": [3]}
    assert encoded["00081115"] == {"vr": "SQ"}


def test_sequences_nest_as_json_objects() -> None:
    ds = image_dataset()
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    ds.ConceptNameCodeSequence = Sequence([code])
    encoded = dataset_to_json(ds, bulk_tags=[], bulk_threshold=1024)
    assert encoded["0040A043"] == {
        "vr": "SQ",
        "Value": [
            {
                "00080100": {"vr": "SH", "Value": ["113100"]},
                "00080102": {"vr": "SH", "Value": ["DCM"]},
            }
        ],
    }


def test_scanned_json_round_trips_through_pydicom() -> None:
    data = part10_bytes(image_dataset(StudyDescription="Thorax", SeriesNumber=4))
    encoded = _scanned_json(data)
    back = Dataset.from_json(encoded)
    assert back.StudyDescription == "Thorax"
    assert back.SeriesNumber == 4
    assert str(back.PatientName) == "Doe^Jane"


def test_ambiguous_vrs_resolve_to_one() -> None:
    assert resolve_vr("OB or OW") == "OW"
    assert resolve_vr("US or SS") == "US"
    assert resolve_vr("LO") == "LO"
