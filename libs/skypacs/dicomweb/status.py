"""STOW-RS failure and warning reasons and the response status they lead to.

FailureReason (0008,1197) and WarningReason (0008,1196) values come from the
Store Instances response (PS3.18 §10.5.3), which reuses the Storage Service
Class statuses (PS3.4 Table B.2-1) and the general DIMSE statuses (PS3.7 Annex C).
Members are ints, so they go straight into a DICOM JSON ``US`` value.
"""

from __future__ import annotations

from enum import IntEnum


class FailureReason(IntEnum):
    """Why an instance was not stored (FailedSOPSequence item, FailureReason)."""

    PROCESSING_FAILURE = 0x0110
    """A general failure in processing the instance (PS3.7 C.4)."""
    DUPLICATE_SOP_INSTANCE = 0x0111
    """An instance with this SOP Instance UID exists and the new one was refused."""
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    """The SOP Class of the instance is not supported (Referenced SOP Class not supported)."""
    NOT_AUTHORIZED = 0x0124
    """The user may not store this instance."""
    OUT_OF_RESOURCES = 0xA700
    """Refused: out of resources (storage full)."""
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    """Error: the data set does not match the SOP Class, or the target study."""
    STUDY_INSTANCE_UID_MISMATCH = 0xA900
    """``POST /studies/{study}`` with an instance of another study (same code)."""
    CANNOT_UNDERSTAND = 0xC000
    """Error: the part could not be parsed as a DICOM instance."""
    REFERENCED_TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
    """The transfer syntax of the instance is not supported."""


class WarningReason(IntEnum):
    """Why an instance was stored with a warning (ReferencedSOPSequence item, WarningReason)."""

    COERCION_OF_DATA_ELEMENTS = 0xB000
    """Some data elements were modified to match the archive's values."""
    ELEMENTS_DISCARDED = 0xB006
    """Some data elements were not stored."""
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xB007
    """Stored, although the data set does not fully match its SOP Class."""


def stow_response_status(stored: int, failed: int, warned: int) -> int:
    """HTTP status of a STOW-RS response (PS3.18 §10.5.3.1).

    200 when every instance was stored without warning, 202 when some were
    stored but others failed or had warnings, 409 when none was stored, and 400
    when the request carried no instance at all.
    """
    if stored == 0:
        return 409 if failed else 400
    return 202 if failed or warned else 200
