"""QIDO-RS result data sets (PS3.18 §10.6.3) as DICOM JSON (PS3.18 F.2).

Each result carries the level's default attributes (PS3.18 Tables 10.6.3-3 to
10.6.3-5, plus what study lists show, see the module constants), the attributes
used as matching keys, those named by ``includefield`` (or all indexed ones for
``includefield=all``), computed attributes and RetrieveURL (0008,1190). A
requested attribute the entity has no value for is sent as ``{"vr": ...}`` with
no ``Value`` (never ``[null]``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any, Final

from pydicom.datadict import dictionary_VR

from skypacs.dicomweb.qido_params import Level, QidoQuery
from skypacs.dicomweb.urls import instance_url, series_url, study_url
from skypacs.index.search import SearchHit

SPECIFIC_CHARACTER_SET: Final = "00080005"
INSTANCE_AVAILABILITY: Final = "00080056"
RETRIEVE_URL: Final = "00081190"
MODALITIES_IN_STUDY: Final = "00080061"
SOP_CLASSES_IN_STUDY: Final = "00080062"
STUDY_RELATED_SERIES: Final = "00201206"
STUDY_RELATED_INSTANCES: Final = "00201208"
SERIES_RELATED_INSTANCES: Final = "00201209"

#: PS3.18 Table 10.6.3-3, plus StudyDescription (0008,1030) for study lists.
STUDY_DEFAULTS: Final = (
    "00080020", "00080030", "00080050", INSTANCE_AVAILABILITY, MODALITIES_IN_STUDY,
    "00080090", "00080201", "00081030", RETRIEVE_URL, "00100010", "00100020",
    "00100030", "00100040", "0020000D", "00200010", STUDY_RELATED_SERIES,
    STUDY_RELATED_INSTANCES,
)  # fmt: skip
#: PS3.18 Table 10.6.3-4, plus SeriesDate (0008,0021).
SERIES_DEFAULTS: Final = (
    "00080021", "00080060", "00080201", "0008103E", RETRIEVE_URL, "0020000E", "00200011",
    SERIES_RELATED_INSTANCES, "00400244", "00400245", "00400275",
)  # fmt: skip
#: PS3.18 Table 10.6.3-5.
INSTANCE_DEFAULTS: Final = (
    "00080016", "00080018", INSTANCE_AVAILABILITY, "00080201", RETRIEVE_URL, "00200013",
    "00280010", "00280011", "00280100", "00280008",
)  # fmt: skip
#: Defaults returned only when the entity has them (conditional in PS3.18).
IF_PRESENT: Final = frozenset({"00080201", "00400244", "00400245", "00400275"})
_COMPUTED: Final = frozenset(
    {
        INSTANCE_AVAILABILITY,
        RETRIEVE_URL,
        MODALITIES_IN_STUDY,
        SOP_CLASSES_IN_STUDY,
        STUDY_RELATED_SERIES,
        STUDY_RELATED_INSTANCES,
        SERIES_RELATED_INSTANCES,
    }
)
#: Stored JSON is Unicode whatever the original character set was (PS3.18 F.2).
UTF8: Final = {"vr": "CS", "Value": ["ISO_IR 192"]}


def _levels(query: QidoQuery) -> tuple[bool, bool, bool]:
    """Which levels' defaults a result carries: (study, series, instance)."""
    if query.level is Level.STUDY:
        return True, False, False
    if query.level is Level.SERIES:
        return query.study_uid is None, True, False
    return query.study_uid is None, query.series_uid is None, True


def requested_tags(query: QidoQuery) -> list[str]:
    """Every top-level tag a result of ``query`` carries (besides ``includefield=all``)."""
    study, series, instance = _levels(query)
    tags: list[str] = []
    for wanted, defaults in ((study, STUDY_DEFAULTS), (series, SERIES_DEFAULTS)):
        if wanted:
            tags.extend(defaults)
    if instance:
        tags.extend(INSTANCE_DEFAULTS)
    tags.extend(sorted(query.returned_tags))
    return list(dict.fromkeys(tags))


def instance_tags(query: QidoQuery) -> frozenset[str] | None:
    """Tags to read from instance JSON (None: all of it, for ``includefield=all``)."""
    if query.include_all:
        return None
    return frozenset(requested_tags(query))


@functools.lru_cache(maxsize=4096)
def vr_of(tag: str) -> str:
    """The dictionary VR of ``tag`` (``UN`` for unknown and private tags); cached."""
    try:
        return str(dictionary_VR(int(tag, 16))).split(" or ")[0]
    except KeyError:
        return "UN"


def _element(vr: str, values: Iterable[Any]) -> dict[str, Any]:
    listed = list(values)
    return {"vr": vr, "Value": listed} if listed else {"vr": vr}


def _computed(hit: SearchHit, level: Level, root: str) -> dict[str, dict[str, Any]]:
    if level is Level.STUDY:
        url = study_url(root, hit.study_uid)
    elif level is Level.SERIES:
        url = series_url(root, hit.study_uid, hit.series_uid or "")
    else:
        url = instance_url(root, hit.study_uid, hit.series_uid or "", hit.sop_instance_uid or "")
    computed = {
        INSTANCE_AVAILABILITY: _element("CS", ["ONLINE"]),
        RETRIEVE_URL: _element("UR", [url]),
        MODALITIES_IN_STUDY: _element("CS", sorted(hit.modalities)),
        SOP_CLASSES_IN_STUDY: _element("UI", sorted(hit.sop_classes)),
        STUDY_RELATED_SERIES: _element("IS", [hit.num_series]),
        STUDY_RELATED_INSTANCES: _element("IS", [hit.study_instances]),
    }
    if hit.series_instances is not None:
        computed[SERIES_RELATED_INSTANCES] = _element("IS", [hit.series_instances])
    return computed


def without_bulk(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """``dataset`` without bulk data references (a search returns no bulk data)."""
    out: dict[str, Any] = {}
    for tag, element in dataset.items():
        if not isinstance(element, dict) or "BulkDataURI" in element or tag.startswith("7FE0"):
            continue
        if element.get("vr") == "SQ" and isinstance(element.get("Value"), list):
            items = [without_bulk(item) for item in element["Value"] if isinstance(item, dict)]
            element = {**element, "Value": items}
        out[tag] = element
    return out


def _sources(hit: SearchHit, query: QidoQuery) -> dict[str, Any]:
    """All stored attributes available to this result, lower levels winning."""
    merged: dict[str, Any] = dict(hit.study_attrs)
    merged.update(hit.series_attrs or {})
    merged.update(hit.instance_attrs or {})
    return merged


def _all_tags(hit: SearchHit, query: QidoQuery) -> list[str]:
    study, series, instance = _levels(query)
    tags: list[str] = []
    if study or query.level is Level.STUDY:
        tags.extend([*hit.study_attrs, SOP_CLASSES_IN_STUDY])
    if series or query.level is Level.SERIES:
        tags.extend(hit.series_attrs or {})
    if instance:
        tags.extend(hit.instance_attrs or {})
    return tags


def result_dataset(hit: SearchHit, query: QidoQuery, root: str) -> dict[str, Any]:
    """The DICOM JSON data set answering ``query`` for ``hit``."""
    stored = without_bulk(_sources(hit, query))
    computed = _computed(hit, query.level, root)
    tags = requested_tags(query)
    if query.include_all:
        tags.extend(t for t in _all_tags(hit, query) if t in stored or t in computed)
    result: dict[str, Any] = {}
    for tag in dict.fromkeys(tags):
        if tag in _COMPUTED and tag in computed:
            result[tag] = computed[tag]
        elif tag == SPECIFIC_CHARACTER_SET:
            result[tag] = UTF8
        elif tag in stored:
            result[tag] = stored[tag]
        elif tag not in IF_PRESENT and tag not in _COMPUTED:
            result[tag] = {"vr": vr_of(tag)}
    return dict(sorted(result.items()))
