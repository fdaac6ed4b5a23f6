"""Index columns extracted from an instance's data set.

Only the four identifying UIDs are required; every other attribute tolerates
malformed or missing values and yields None rather than failing the store.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from skypacs.dicom.pixel_layout import int_attribute
from skypacs.dicom.plain_values import keyword_tag, plain_element, plain_text
from skypacs.dicom.uids import validate_uid
from skypacs.errors import InvalidUID

#: PS3.4 B.2.3 / PS3.18 Table 10.5.3-1: "data set does not match SOP class".
DATASET_MISMATCH: Final = 0xA900

REQUIRED_UIDS: Final = {
    "study_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "sop_instance_uid": "SOPInstanceUID",
    "sop_class_uid": "SOPClassUID",
}
TEXT_ATTRIBUTES: Final = {
    "patient_id": "PatientID",
    "issuer": "IssuerOfPatientID",
    "patient_name": "PatientName",
    "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "accession_number": "AccessionNumber",
    "study_id": "StudyID",
    "study_description": "StudyDescription",
    "referring_physician_name": "ReferringPhysicianName",
    "modality": "Modality",
    "series_description": "SeriesDescription",
    "series_date": "SeriesDate",
    "series_time": "SeriesTime",
    "body_part_examined": "BodyPartExamined",
}
INTEGER_ATTRIBUTES: Final = {
    "series_number": "SeriesNumber",
    "instance_number": "InstanceNumber",
    "number_of_frames": "NumberOfFrames",
}

logger = logging.getLogger(__name__)


def instance_index_fields(ds: Dataset) -> dict[str, Any]:
    """The index columns of one instance: UIDs (validated), text and integers.

    Raises :class:`skypacs.errors.InvalidUID` (failure 0xA900) when a required
    UID is missing or malformed; any other odd value becomes None. Person names
    are the full Unicode string (component groups joined by ``=``).
    """
    fields: dict[str, Any] = {key: required_uid(ds, kw) for key, kw in REQUIRED_UIDS.items()}
    for key, keyword in TEXT_ATTRIBUTES.items():
        fields[key] = text_attribute(ds, keyword)
    for key, keyword in INTEGER_ATTRIBUTES.items():
        fields[key] = int_attribute(ds, keyword)
    return fields


def required_uid(ds: Dataset, keyword: str) -> str:
    """A required UI attribute, validated; raises InvalidUID naming it."""
    value = text_attribute(ds, keyword) or ""
    try:
        return validate_uid(value, field=keyword)
    except InvalidUID as exc:
        raise InvalidUID(exc.detail, failure_reason=DATASET_MISMATCH) from None


def text_attribute(ds: Dataset, keyword: str) -> str | None:
    """A string attribute as Unicode text, None when absent, empty or undecodable."""
    tag = keyword_tag(keyword)
    if tag not in ds:
        return None
    plain = plain_element(ds, tag)
    if plain is not None:
        return plain_text(plain[1]).strip(" \x00") or None
    try:
        value = ds.get(keyword)
    except Exception:  # a raw value pydicom cannot decode
        logger.warning("attribute %s cannot be decoded; indexed as empty", keyword)
        return None
    if value is None:
        return None
    if isinstance(value, MultiValue | list):
        text = "\\".join(str(item) for item in value)
    elif isinstance(value, bytes):
        text = value.decode("ascii", "replace")
    else:
        text = str(value)
    text = text.strip(" \x00")
    return text or None
