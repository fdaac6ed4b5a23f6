"""The STOW-RS response: a DICOM JSON data set (PS3.18 §10.5.3, Table 10.5.3-2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import Response

from skypacs.dicom.uids import is_valid_uid
from skypacs.dicomweb.status import stow_response_status
from skypacs.dicomweb.urls import instance_url, study_url
from skypacs.ingest.pipeline import StoreOutcome

#: Exactly this, without ``; charset=``: dicomweb-client ignores the body otherwise.
DICOM_JSON = "application/dicom+json"

RETRIEVE_URL = "00081190"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


def _reference(outcome: StoreOutcome) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if outcome.sop_class_uid and is_valid_uid(outcome.sop_class_uid):
        item[REFERENCED_SOP_CLASS_UID] = _ui(outcome.sop_class_uid)
    if outcome.sop_instance_uid and is_valid_uid(outcome.sop_instance_uid):
        item[REFERENCED_SOP_INSTANCE_UID] = _ui(outcome.sop_instance_uid)
    return item


def _stored_item(outcome: StoreOutcome, root: str) -> dict[str, Any]:
    item = _reference(outcome)
    url = instance_url(
        root, outcome.study_uid or "", outcome.series_uid or "", outcome.sop_instance_uid or ""
    )
    item[RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
    return item


def _failed_item(outcome: StoreOutcome) -> dict[str, Any]:
    item = _reference(outcome)
    item[FAILURE_REASON] = {"vr": "US", "Value": [int(outcome.failure or 0)]}
    return item


def _study_of(outcomes: Sequence[StoreOutcome], path_study: str | None) -> str | None:
    """The study RetrieveURL names: the path's, or the one study all stored share."""
    if path_study:
        return path_study
    studies = {o.study_uid for o in outcomes if o.ok and o.study_uid}
    return studies.pop() if len(studies) == 1 else None


def stow_response(outcomes: Sequence[StoreOutcome], root: str, path_study: str | None) -> Response:
    """200 all stored, 202 some failed, 409 none stored (PS3.18 Table 10.5.3-1)."""
    stored = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    body: dict[str, Any] = {}
    study = _study_of(outcomes, path_study)
    if study and is_valid_uid(study):
        body[RETRIEVE_URL] = {"vr": "UR", "Value": [study_url(root, study)]}
    if failed:
        body[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": [_failed_item(o) for o in failed]}
    if stored:
        body[REFERENCED_SOP_SEQUENCE] = {
            "vr": "SQ",
            "Value": [_stored_item(o, root) for o in stored],
        }
    status = stow_response_status(len(stored), len(failed), 0)
    return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON)
