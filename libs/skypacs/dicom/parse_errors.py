"""Errors raised while reading uploaded DICOM data."""

from __future__ import annotations

from skypacs.errors import BadRequest

#: PS3.18 Table 10.5.3-1 / PS3.4 Annex B: "Error: cannot understand".
CANNOT_UNDERSTAND = 0xC000


class DicomParseError(BadRequest):
    """The upload is not a readable DICOM Part 10 instance (failure 0xC000)."""

    failure_reason = CANNOT_UNDERSTAND
    title = "cannot understand DICOM data"
