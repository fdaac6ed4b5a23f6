"""DICOM JSON values of text and numeric attributes (PS3.18 F.2.3, F.2.5).

Text and numbers are encoded without pydicom's per-element JSON machinery; the
answers must stay exactly what pydicom's encoding (then the model's rules for
empty values) gives.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from skypacs.dicom.dicom_json import dataset_to_json

pytestmark = pytest.mark.unit


def _encode(tag: int, vr: str, value: Any) -> dict[str, Any]:
    ds = Dataset()
    ds.add(DataElement(tag, vr, value))
    return dataset_to_json(ds, bulk_tags=(), bulk_threshold=1024)[f"{tag:08X}"]


def _reference(tag: int, vr: str, value: Any) -> dict[str, Any]:
    """pydicom's own encoding, with empty values made null or dropped as the model says."""
    encoded: dict[str, Any] = DataElement(tag, vr, value).to_json_dict(None, 0)
    values = [None if item == "" else item for item in encoded.get("Value", [])]
    encoded.pop("Value", None)
    if any(item is not None for item in values):
        encoded["Value"] = values
    return encoded


CASES = [
    (0x00080060, "CS", "CT"),
    (0x00080060, "CS", ""),
    (0x00080060, "CS", None),
    (0x00080008, "CS", ["ORIGINAL", "PRIMARY", "AXIAL"]),
    (0x00080008, "CS", ["ORIGINAL", "", "AXIAL"]),
    (0x00080008, "CS", ["", ""]),
    (0x0020000D, "UI", "1.2.840.113619.2.1"),
    (0x00081030, "LO", "Thorax ünd Abdomen"),
    (0x00204000, "LT", "a\\b stays one value"),
    (0x00080020, "DA", "20261130"),
    (0x00200013, "IS", "7"),
    (0x00200013, "IS", ""),
    (0x00200037, "DS", ["1", "0", "0", "0", "1", "0"]),
    (0x00280030, "DS", "0.703125\\0.703125"),
    (0x00181050, "DS", "1.5"),
    (0x00280010, "US", 512),
    (0x00280010, "US", None),
    (0x00281101, "US", [4096, 0, 12]),
    (0x00189327, "FD", 123.25),
    (0x00189219, "FD", [1.5, -2.0]),
    (0x00186020, "SL", -3),
    (0x00209241, "FL", 0.5),
    (0x00280106, "SS", -1024),
]


@pytest.mark.parametrize(("tag", "vr", "value"), CASES)
def test_value_matches_pydicoms_encoding(tag: int, vr: str, value: Any) -> None:
    assert _encode(tag, vr, value) == {**_reference(tag, vr, value), "vr": vr}


def test_numbers_are_plain_json_numbers() -> None:
    spacing = _encode(0x00280030, "DS", ["0.5", "0.25"])
    assert spacing == {"vr": "DS", "Value": [0.5, 0.25]}
    assert all(type(item) is float for item in spacing["Value"])
    number = _encode(0x00200013, "IS", "12")
    assert number == {"vr": "IS", "Value": [12]}
    assert type(number["Value"][0]) is int


def test_empty_value_among_several_is_null() -> None:
    assert _encode(0x00080008, "CS", ["ORIGINAL", "", "AXIAL"]) == {
        "vr": "CS",
        "Value": ["ORIGINAL", None, "AXIAL"],
    }
    assert _encode(0x00080008, "CS", ["", ""]) == {"vr": "CS"}
