"""Common element values decoded straight from their raw bytes.

pydicom converts a raw element on first access: keyword lookup, hooks, value
converters, character set handling and validation, some 10-20 µs per element.
Ingest reads every header element once for DICOM JSON and some forty of them
again for the index. The plain cases are decoded here in a few µs, exactly as
pydicom would decode them:

- text VRs whose bytes are plain ASCII without escape sequences, which read the
  same under every Specific Character Set (PS3.5 6.1: the default repertoire
  is the G0 set of every supported character set);
- IS and DS strings that are well-formed numbers;
- binary numbers (US, SS, UL, SL, UV, SV, FL, FD).

Anything else (an element pydicom has already converted, non-ASCII text, an
odd value, SQ, AT, binary VRs, private or unknown tags without an explicit VR)
gives ``None``, and the caller lets pydicom decode it.
"""

from __future__ import annotations

import re
import struct
from functools import lru_cache
from typing import Any, Final

from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

#: Text VRs: how pydicom splits and strips their decoded values (pydicom.values).
_STRIPPED_EACH: Final = frozenset({"AE"})
_TRIMMED_WHOLE: Final = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})
_TRIMMED_EACH: Final = frozenset({"SH", "LO", "UC"})
_SINGLE: Final = frozenset({"LT", "ST", "UT"})
_DATE_TIME: Final = frozenset({"DA", "DT", "TM"})
_BINARY_NUMBERS: Final = {
    "US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d",
}  # fmt: skip
PLAIN_VRS: Final = (
    _STRIPPED_EACH
    | _TRIMMED_WHOLE
    | _TRIMMED_EACH
    | _SINGLE
    | frozenset({"UR", "PN", "IS", "DS"})
    | frozenset(_BINARY_NUMBERS)
)
_INTEGER: Final = re.compile(r"\s*[+-]?\d+\s*")
_DECIMAL: Final = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_ESCAPE: Final = 0x1B

#: A decoded value: its VR and its values (text, int or float); no values when empty.
Plain = tuple[str, list[Any]]


def plain_element(ds: Dataset, tag: BaseTag) -> Plain | None:
    """The VR and values of ``ds[tag]`` decoded here; None if pydicom must decode it."""
    raw: object = ds.get_item(tag)  # typed as DataElement, but raw until first access
    if not isinstance(raw, RawDataElement) or raw.value is None:
        return None
    vr = raw.VR if raw.VR is not None else _public_vr(tag)
    if vr not in PLAIN_VRS:
        return None
    values = _plain_values(vr, raw.value, raw.is_little_endian)
    return None if values is None else (vr, values)


@lru_cache(maxsize=512)
def keyword_tag(keyword: str) -> BaseTag:
    """The tag of a dictionary keyword; KeyError for an unknown keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return BaseTag(tag)


@lru_cache(maxsize=4096)
def _public_vr(tag: BaseTag) -> str | None:
    """The dictionary VR of a public tag read with implicit VR; None otherwise."""
    if tag.is_private or tag.element == 0:
        return None
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _plain_values(vr: str, data: bytes, little: bool) -> list[Any] | None:
    number = _BINARY_NUMBERS.get(vr)
    if number is not None:
        return _binary_numbers(data, number, little)
    if not data.isascii() or _ESCAPE in data:
        return None
    if vr in _DATE_TIME and config.datetime_conversion:
        return None
    if vr == "PN":
        return _names(data)
    text = data.decode("ascii")
    if vr == "IS":
        return None if config.use_IS_numpy else _numbers(text.rstrip(" \x00"), _INTEGER, int)
    if vr == "DS":
        exotic = config.use_DS_numpy or config.use_DS_decimal
        return None if exotic else _numbers(text.strip(), _DECIMAL, float)
    return _texts(vr, text)


def _texts(vr: str, text: str) -> list[str]:
    if vr in _STRIPPED_EACH:  # AE: leading and trailing spaces are insignificant
        return [part.strip() for part in text.split("\\")]
    if vr in _TRIMMED_EACH:
        return [part.rstrip("\x00 ") for part in text.split("\\")]
    if vr in _TRIMMED_WHOLE:
        value = text.rstrip(" \x00")
        return value.split("\\") if value else []
    value = text.rstrip() if vr == "UR" else text.rstrip("\x00 ")  # single-valued
    return [value] if value else []


def _names(data: bytes) -> list[str] | None:
    """PN values; an empty one among several is left to pydicom."""
    text = data.rstrip(b"\x00 ").decode("ascii")
    if not text:
        return []
    values = text.split("\\")
    return values if all(values) or len(values) == 1 else None


def _numbers(
    text: str, pattern: re.Pattern[str], kind: type[int] | type[float]
) -> list[Any] | None:
    """IS or DS values; None unless every one is a well-formed number."""
    if not text.strip():
        return []
    parts = text.split("\\")
    if not all(pattern.fullmatch(part) for part in parts):
        return None
    return [kind(part) for part in parts]


def _binary_numbers(data: bytes, code: str, little: bool) -> list[Any] | None:
    size = struct.calcsize(f"<{code}")  # standard sizes, not the platform's
    if len(data) % size:
        return None
    return list(struct.unpack(f"{'<' if little else '>'}{len(data) // size}{code}", data))


def plain_json(vr: str, values: list[Any]) -> dict[str, Any]:
    """The DICOM JSON attribute of a plain value (PS3.18 F.2.2, F.2.5)."""
    if vr == "PN" and values:
        return {"vr": vr, "Value": [_name_json(value) for value in values]}
    if not values or (isinstance(values[0], str) and not any(values)):
        return {"vr": vr}
    if isinstance(values[0], str):
        return {"vr": vr, "Value": [value or None for value in values]}
    return {"vr": vr, "Value": values}


def _name_json(value: str) -> dict[str, str]:
    """A person name's component groups (PS3.18 F.2.2)."""
    return dict(zip(("Alphabetic", "Ideographic", "Phonetic"), value.split("="), strict=False))


def plain_text(values: list[Any]) -> str:
    """The values as one string, several joined by backslashes."""
    return "\\".join(str(value) for value in values)


def plain_integer(values: list[Any]) -> int | None:
    """The single value as an integer; None when there are several or it is not whole."""
    if len(values) != 1:
        return None
    try:
        number = float(values[0])
    except (ValueError, OverflowError):
        return None
    return int(number) if number.is_integer() else None
