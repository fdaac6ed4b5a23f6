"""UID validation and the transfer syntax table."""

from __future__ import annotations

import pydicom.uid
import pytest

from skypacs.dicom.transfer_syntaxes import TRANSFER_SYNTAXES, get_transfer_syntax
from skypacs.dicom.uids import is_strict_uid, is_valid_uid, validate_uid
from skypacs.errors import InvalidUID

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2", "0", "1.2.3.0.4", "1." + "1" * 62])
def test_conformant_uids(uid: str) -> None:
    assert is_valid_uid(uid)
    assert is_strict_uid(uid)
    assert validate_uid(uid, field="SOPInstanceUID") == uid


def test_leading_zero_components_are_accepted_but_not_strict() -> None:
    uid = "1.2.840.0123.4"
    assert is_valid_uid(uid)
    assert not is_strict_uid(uid)
    assert validate_uid(uid, field="SeriesInstanceUID") == uid


def test_nul_padding_is_stripped() -> None:
    assert validate_uid("1.2.3\x00", field="StudyInstanceUID") == "1.2.3"


@pytest.mark.parametrize(
    "uid", ["", "1..2", ".1.2", "1.2.", "1.2.a", "1.2 3", "../etc", "1." + "1" * 63, "1,2"]
)
def test_invalid_uids_are_refused_naming_the_field(uid: str) -> None:
    assert not is_valid_uid(uid)
    with pytest.raises(InvalidUID, match="StudyInstanceUID") as caught:
        validate_uid(uid, field="StudyInstanceUID")
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("uid", "media_type", "encapsulated"),
    [
        (pydicom.uid.ImplicitVRLittleEndian, "application/octet-stream", False),
        (pydicom.uid.JPEGBaseline8Bit, "image/jpeg", True),
        (pydicom.uid.JPEGLosslessSV1, "image/jpeg", True),
        (pydicom.uid.JPEGLSNearLossless, "image/jls", True),
        (pydicom.uid.JPEG2000Lossless, "image/jp2", True),
        (pydicom.uid.HTJ2KLosslessRPCL, "image/jphc", True),
        (pydicom.uid.RLELossless, "image/x-dicom-rle", True),
        (pydicom.uid.MPEG2MPHL, "video/mpeg", True),
        (pydicom.uid.HEVCM10P51, "video/mp4", True),
    ],
)
def test_frame_media_types(uid: str, media_type: str, encapsulated: bool) -> None:
    syntax = get_transfer_syntax(uid)
    assert syntax is not None
    assert syntax.media_type == media_type
    assert syntax.is_encapsulated is encapsulated


def test_table_agrees_with_pydicom() -> None:
    for uid, syntax in TRANSFER_SYNTAXES.items():
        reference = pydicom.uid.UID(uid)
        if not reference.is_transfer_syntax:
            continue
        assert syntax.is_encapsulated == reference.is_encapsulated, uid
        assert syntax.is_little_endian == reference.is_little_endian, uid
        assert syntax.is_implicit_vr == reference.is_implicit_VR, uid
        assert syntax.is_deflated == reference.is_deflated, uid


def test_special_syntaxes() -> None:
    big = get_transfer_syntax("1.2.840.10008.1.2.2")
    assert big is not None
    assert not big.is_little_endian
    assert big.is_retired
    deflated = get_transfer_syntax("1.2.840.10008.1.2.1.99")
    assert deflated is not None
    assert deflated.is_deflated
    assert not deflated.is_encapsulated
    assert get_transfer_syntax("1.2.3.4") is None
    assert len([s for s in TRANSFER_SYNTAXES.values() if s.media_type == "image/jphc"]) == 3
