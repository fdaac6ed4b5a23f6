"""DICOM JSON Model encoding of a data set (PS3.18 Annex F.2).

Large binary values are never inlined: they become relative ``BulkDataURI``
references (``bulk/<TAG>`` at top level, ``bulk/<SEQ>/<item>/<TAG>`` inside
sequences) that the WADO-RS layer rewrites to absolute URLs. Text values come
out as Unicode, decoded with the data set's Specific Character Set by pydicom.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from typing import Any, Final

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
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
    """Delegate plain values to pydicom, then fix what the JSON model forbids."""
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
