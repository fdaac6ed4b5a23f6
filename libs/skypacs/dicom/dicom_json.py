"""DICOM JSON Model encoding of a data set (PS3.18 Annex F.2).

Large binary values are never inlined: they become relative ``BulkDataURI``
references (``bulk/<TAG>`` at top level, ``bulk/<SEQ>/<item>/<TAG>`` inside
sequences) that the WADO-RS layer rewrites to absolute URLs. Text values come
out as Unicode, decoded with the data set's Specific Character Set by pydicom,
except the plain ones :mod:`~skypacs.dicom.plain_values` decodes itself.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from typing import Any, Final

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from skypacs.dicom.plain_values import plain_element, plain_json

BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: VRs whose JSON values are the decoded strings themselves (PS3.18 Table F.2.3-1).
TEXT_VRS: Final = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
#: VRs whose JSON values are numbers, with the Python type each one becomes.
NUMBER_VRS: Final[dict[str, type[int] | type[float]]] = {
    "IS": int, "SL": int, "SS": int, "SV": int, "UL": int, "US": int, "UV": int,
    "DS": float, "FD": float, "FL": float,
}  # fmt: skip
PIXEL_DATA_KEYS: Final = frozenset({"7FE00010", "7FE00008", "7FE00009"})
BULK_PREFIX: Final = "bulk/"

logger = logging.getLogger(__name__)


def dataset_to_json(
    ds: Dataset, *, bulk_tags: Iterable[str], bulk_threshold: int
) -> dict[str, Any]:
    """Encode ``ds`` as a DICOM JSON object.

    ``bulk_tags`` (8-hex tags of top-level values stored apart, e.g. the keys of
    a scan's ``bulk_ranges``) and Pixel Data always become ``BulkDataURI``; so
    does any binary value longer than ``bulk_threshold`` bytes.
    """
    top_bulk = {tag.upper() for tag in bulk_tags} | PIXEL_DATA_KEYS
    return _dataset_json(ds, top_bulk, bulk_threshold, BULK_PREFIX)


def _dataset_json(
    ds: Dataset, bulk: frozenset[str] | set[str], threshold: int, path: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in sorted(ds.keys()):
        if tag.element == 0:
            continue  # group lengths are not part of the JSON model
        key = f"{int(tag):08X}"
        plain = None if key in bulk else plain_element(ds, tag)
        if plain is not None:
            out[key] = plain_json(*plain)
            continue
        try:
            elem = ds[tag]
        except Exception:  # undecodable raw value: keep the attribute, drop the value
            logger.warning("attribute %s cannot be decoded; emitted without value", key)
            out[key] = {"vr": _fallback_vr(ds, tag)}
            continue
        out[key] = _element_json(elem, key, bulk, threshold, path)
    return out


def _element_json(
    elem: DataElement, key: str, bulk: frozenset[str] | set[str], threshold: int, path: str
) -> dict[str, Any]:
    vr = resolve_vr(str(elem.VR))
    if key in bulk or (vr in BINARY_VRS and _byte_length(elem) > threshold):
        return {"vr": vr, "BulkDataURI": f"{path}{key}"}
    if vr in BINARY_VRS:
        return _binary_json(elem, vr)
    if vr == "SQ":
        items = [
            _dataset_json(item, frozenset(), threshold, f"{path}{key}/{index}/")
            for index, item in enumerate(elem.value or [])
        ]
        return {"vr": vr, "Value": items} if items else {"vr": vr}
    return _value_json(elem, vr, key)


def _binary_json(elem: DataElement, vr: str) -> dict[str, Any]:
    value = elem.value
    if not value:
        return {"vr": vr}
    return {"vr": vr, "InlineBinary": base64.b64encode(bytes(value)).decode("ascii")}


def _value_json(elem: DataElement, vr: str, key: str) -> dict[str, Any]:
    """Plain values: text and numbers directly, anything else through pydicom."""
    if vr == elem.VR:
        if vr in TEXT_VRS:
            encoded = _text_json(elem.value, vr)
        else:
            number = NUMBER_VRS.get(vr)
            encoded = None if number is None else _number_json(elem.value, vr, number)
        if encoded is not None:
            return encoded
    return _pydicom_json(elem, vr, key)


def _text_json(value: Any, vr: str) -> dict[str, Any] | None:
    """What :func:`_pydicom_json` makes of a string value; None for any other value."""
    if value is None or value == "":
        return {"vr": vr} if value is None or isinstance(value, str) else None
    if isinstance(value, str):
        return {"vr": vr, "Value": [value]}
    if type(value) is not MultiValue or len(value) < 2:
        return None
    values = list(value)
    if not all(isinstance(item, str) for item in values):
        return None
    values = [item or None for item in values]
    if all(item is None for item in values):
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _number_json(value: Any, vr: str, number: type[int] | type[float]) -> dict[str, Any] | None:
    """What :func:`_pydicom_json` makes of a numeric value; None for any other value."""
    if value is None or (isinstance(value, str) and not value):
        return {"vr": vr}
    if isinstance(value, number) and not isinstance(value, bool):
        return {"vr": vr, "Value": [number(value)]}
    if type(value) is not MultiValue or len(value) < 2:
        return None
    values = list(value)
    if not all(isinstance(item, number) and not isinstance(item, bool) for item in values):
        return None
    return {"vr": vr, "Value": [number(item) for item in values]}


def _pydicom_json(elem: DataElement, vr: str, key: str) -> dict[str, Any]:
    """Delegate a value to pydicom, then fix what the JSON model forbids."""
    try:
        encoded: dict[str, Any] = elem.to_json_dict(None, 0)
    except Exception:  # e.g. IS "abc": the attribute stays, its value cannot
        logger.warning("attribute %s has an invalid %s value; emitted without value", key, vr)
        return {"vr": vr}
    encoded["vr"] = vr
    values = encoded.get("Value")
    if values is None:
        return encoded
    # PS3.18 F.2.5: an empty value among several is null; no value at all, no "Value".
    values = [None if value == "" else value for value in values]
    if all(value is None for value in values):
        del encoded["Value"]
    else:
        encoded["Value"] = values
    return encoded


def resolve_vr(vr: str) -> str:
    """A single VR for pydicom's unresolved ambiguous ones ("OB or OW" -> "OW")."""
    if " or " not in vr:
        return vr
    candidates = vr.split(" or ")
    return "OW" if "OW" in candidates else candidates[0]


def _byte_length(elem: DataElement) -> int:
    value = elem.value
    return len(value) if isinstance(value, bytes | bytearray) else 0


def _fallback_vr(ds: Dataset, tag: Any) -> str:
    raw_vr = getattr(ds.get_item(tag), "VR", None)
    if raw_vr:
        return resolve_vr(str(raw_vr))
    try:
        return resolve_vr(str(dictionary_VR(tag)))
    except KeyError:
        return "UN"
