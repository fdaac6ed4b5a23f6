"""STOW-RS reason codes and response status."""

from __future__ import annotations

import pytest

from skypacs.dicomweb.status import FailureReason, WarningReason, stow_response_status

pytestmark = pytest.mark.unit


def test_codes_match_the_standard() -> None:
    assert FailureReason.OUT_OF_RESOURCES == 0xA700
    assert FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS == 0xA900
    assert FailureReason.STUDY_INSTANCE_UID_MISMATCH == 0xA900
    assert FailureReason.CANNOT_UNDERSTAND == 0xC000
    assert FailureReason.REFERENCED_TRANSFER_SYNTAX_NOT_SUPPORTED == 0xC122
    assert FailureReason.PROCESSING_FAILURE == 0x0110
    assert FailureReason.DUPLICATE_SOP_INSTANCE == 0x0111
    assert FailureReason.SOP_CLASS_NOT_SUPPORTED == 0x0122
    assert FailureReason.NOT_AUTHORIZED == 0x0124
    assert WarningReason.COERCION_OF_DATA_ELEMENTS == 0xB000
    assert WarningReason.ELEMENTS_DISCARDED == 0xB006
    assert WarningReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS == 0xB007


def test_codes_serialize_as_plain_numbers() -> None:
    import json

    assert json.dumps({"Value": [FailureReason.OUT_OF_RESOURCES]}) == '{"Value": [42752]}'


@pytest.mark.parametrize(
    ("stored", "failed", "warned", "status"),
    [(3, 0, 0, 200), (3, 0, 1, 202), (2, 1, 0, 202), (0, 2, 0, 409), (0, 0, 0, 400)],
)
def test_stow_response_status(stored: int, failed: int, warned: int, status: int) -> None:
    assert stow_response_status(stored, failed, warned) == status
