"""QIDO-RS query parameters (PS3.18 §8.3.4, §10.6.1.2) parsed into a :class:`QidoQuery`.

Matching keys are keywords or tags (``PatientID``, ``00100020``), sequence items
addressed with dots (``RequestAttributesSequence.ScheduledProcedureStepID``). Each
value becomes a matcher per PS3.4 C.2.2.2: universal (empty or ``*``), a list of
single values and wildcard patterns (UIDs separated by ``,`` or ``\\``), a range
for DA/TM/DT, or person-name matching. Every problem raises :class:`BadRequest`
naming the parameter.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from skypacs.errors import BadRequest

MAX_VALUE_LENGTH: Final = 1024
MAX_TERMS: Final = 64
MAX_NESTING: Final = 4
WILDCARDS: Final = frozenset("*?")

_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_UID_PATTERN = re.compile(r"^[0-9.*?]{1,64}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_DATETIME = re.compile(
    r"^(\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?)([+-]\d{4})?$"
)
_INTEGER = re.compile(r"^[+-]?\d{1,12}$")
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INTEGER_VRS: Final = frozenset({"IS", "US", "SS", "UL", "SL", "UV", "SV"})
_DECIMAL_VRS: Final = frozenset({"DS", "FL", "FD"})
_BINARY_VRS: Final = frozenset({"OB", "OW", "OD", "OF", "OL", "OV"})

#: Date attributes whose range combines with the paired time (PS3.4 C.2.2.2.5.1).
DATE_TIME_PAIRS: Final = {
    "00080020": "00080030",  # StudyDate, StudyTime
    "00080021": "00080031",  # SeriesDate, SeriesTime
    "00080022": "00080032",  # AcquisitionDate, AcquisitionTime
    "00080023": "00080033",  # ContentDate, ContentTime
    "00400244": "00400245",  # PerformedProcedureStepStartDate/Time
}

#: Parameters that are not matching keys (PS3.18 Table 8.3.4-1).
LIMIT, OFFSET, INCLUDEFIELD, FUZZY = "limit", "offset", "includefield", "fuzzymatching"
IGNORED: Final = frozenset({"accept", "charset"})


class Level(enum.StrEnum):
    """The resource a search returns."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


@dataclass(frozen=True, slots=True)
class Attribute:
    """A query attribute: its tag path (sequences first), the last tag's VR and name."""

    path: tuple[str, ...]
    vr: str
    keyword: str

    @property
    def tag(self) -> str:
        """The top-level tag: what a result carries for this key."""
        return self.path[0]


@dataclass(frozen=True, slots=True)
class Universal:
    """Universal matching: every entity matches; the attribute is returned."""


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """Single value, list of UID, or wildcard matching; any of ``values`` may match.

    A value containing ``*`` or ``?`` is a wildcard pattern (PS3.4 C.2.2.2.4).
    """

    values: tuple[str, ...]

    @property
    def exact(self) -> tuple[str, ...]:
        return tuple(v for v in self.values if not WILDCARDS & set(v))

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(v for v in self.values if WILDCARDS & set(v))


@dataclass(frozen=True, slots=True)
class RangeMatch:
    """Range matching on DA, TM or DT text (PS3.4 C.2.2.2.5); None bounds are open.

    Bounds are normalised: dates ``YYYYMMDD``, times ``HHMMSS.ffffff`` prefixes,
    date-times their concatenation. ``combined`` marks a date range merged with
    the paired time range, compared against date and time as one value.
    """

    low: str | None
    high: str | None
    combined: bool = False


@dataclass(frozen=True, slots=True)
class NameMatch:
    """Person name matching (PS3.4 C.2.2.2.1, C.2.2.2.4) of any of ``values``."""

    values: tuple[str, ...]
    fuzzy: bool


Matcher = Universal | ValueMatch | RangeMatch | NameMatch


@dataclass(frozen=True, slots=True)
class Term:
    """One matching key: the parameter as sent, its attribute and how it matches."""

    param: str
    attribute: Attribute
    matcher: Matcher
    #: The attribute whose value was merged into this term (combined date/time).
    merged: Attribute | None = None


@dataclass(frozen=True, slots=True)
class QidoQuery:
    """A parsed search request."""

    level: Level
    study_uid: str | None = None
    series_uid: str | None = None
    terms: tuple[Term, ...] = ()
    include: tuple[Attribute, ...] = ()
    include_all: bool = False
    fuzzy: bool = False
    limit: int | None = None
    offset: int = 0
    returned_tags: frozenset[str] = field(default_factory=frozenset)


# --- attributes -----------------------------------------------------------------------


def _resolve_one(name: str, param: str) -> tuple[str, str, str]:
    """``(tag, vr, keyword)`` for a keyword or 8-hex-digit tag."""
    if _TAG.match(name):
        tag = name.upper()
        number = int(tag, 16)
        if number & 0xFFFF == 0:
            raise BadRequest(f"query parameter {param!r}: group length {tag} is not searchable")
        try:
            vr = dictionary_VR(number)
            keyword = keyword_for_tag(number) or tag
        except KeyError:
            vr, keyword = "UN", tag
        return tag, vr.split(" or ")[0], keyword
    number_or_none = tag_for_keyword(name)
    if number_or_none is None:
        raise BadRequest(f"query parameter {param!r}: {name!r} is not a DICOM keyword or tag")
    return f"{number_or_none:08X}", dictionary_VR(number_or_none).split(" or ")[0], name


def resolve_attribute(name: str, param: str | None = None) -> Attribute:
    """The attribute named by ``name``: keyword, tag, or a dotted path through sequences."""
    param = param or name
    pieces = name.strip().split(".")
    if not 1 <= len(pieces) <= MAX_NESTING or not all(pieces):
        raise BadRequest(f"query parameter {param!r} is not an attribute or attribute path")
    resolved = [_resolve_one(piece, param) for piece in pieces]
    for tag, vr, keyword in resolved[:-1]:
        if vr != "SQ":
            raise BadRequest(f"query parameter {param!r}: {keyword} ({tag}) is not a sequence")
    tag, vr, keyword = resolved[-1]
    return Attribute(tuple(t for t, _, _ in resolved), vr, ".".join(k for _, _, k in resolved))


# --- values -------------------------------------------------------------------------------


def _split(value: str, separators: str) -> tuple[str, ...]:
    pieces = re.split(f"[{re.escape(separators)}]", value)
    return tuple(dict.fromkeys(p for p in (piece.strip() for piece in pieces) if p))


def _check_each(values: Iterable[str], pattern: re.Pattern[str], param: str, what: str) -> None:
    for value in values:
        if not pattern.match(value):
            raise BadRequest(f"query parameter {param!r}: {value!r} is not {what}")


def _range_bounds(value: str, bound: re.Pattern[str], param: str, what: str) -> RangeMatch:
    if value.count("-") != 1:
        if not bound.match(value):
            raise BadRequest(f"query parameter {param!r}: {value!r} is not {what} or a range")
        return RangeMatch(value, value)
    low, high = (piece.strip() or None for piece in value.split("-"))
    for piece in (low, high):
        if piece is not None and not bound.match(piece):
            raise BadRequest(f"query parameter {param!r}: {piece!r} is not {what}")
    # A time range may "end before it starts" when combined with a date range.
    if bound is _DATE and low is not None and high is not None and high < low:
        raise BadRequest(f"query parameter {param!r}: range {value!r} ends before it starts")
    return RangeMatch(low, high)


def _datetime_match(value: str, param: str) -> RangeMatch:
    """DT single value or range; a '-' may also start a UTC offset, so try each split."""
    single = _DATETIME.match(value)
    if single:
        return RangeMatch(single[1], single[1])
    for index, char in enumerate(value):
        if char != "-":
            continue
        low, high = value[:index].strip(), value[index + 1 :].strip()
        parsed = [_DATETIME.match(piece) if piece else None for piece in (low, high)]
        if (low or high) and all(
            p is not None or not piece for p, piece in zip(parsed, (low, high), strict=True)
        ):
            bounds = [p[1] if p is not None else None for p in parsed]
            return RangeMatch(bounds[0], bounds[1])
    raise BadRequest(f"query parameter {param!r}: {value!r} is not a date-time or a range")


def _number_values(values: tuple[str, ...], vr: str, param: str) -> tuple[str, ...]:
    out = []
    for value in values:
        if WILDCARDS & set(value):
            out.append(value)
        elif vr in _INTEGER_VRS and _INTEGER.match(value):
            out.append(str(int(value)))
        elif vr in _DECIMAL_VRS and _DECIMAL.match(value):
            out.append(repr(float(value)).removesuffix(".0"))
        else:
            raise BadRequest(f"query parameter {param!r}: {value!r} is not a number")
    return tuple(out)


def parse_matcher(attribute: Attribute, value: str, *, fuzzy: bool, param: str) -> Matcher:
    """The matcher for ``value`` of ``attribute`` (PS3.4 C.2.2.2)."""
    if len(value) > MAX_VALUE_LENGTH:
        raise BadRequest(f"query parameter {param!r} is longer than {MAX_VALUE_LENGTH} characters")
    if "\ufffd" in value or any(ord(c) < 0x20 for c in value):
        raise BadRequest(f"query parameter {param!r}: value is not valid UTF-8 text")
    value = value.strip()
    if value in ("", "*"):
        return Universal()
    vr = attribute.vr
    if vr == "SQ" or vr in _BINARY_VRS:
        raise BadRequest(
            f"query parameter {param!r}: {attribute.keyword} can only be given without a value"
        )
    if vr == "DA":
        return _range_bounds(value, _DATE, param, "a date (YYYYMMDD)")
    if vr == "TM":
        return _range_bounds(value.replace(":", ""), _TIME, param, "a time (HHMMSS.FFFFFF)")
    if vr == "DT":
        return _datetime_match(value, param)
    if vr == "PN":
        return NameMatch(_split(value, "\\"), fuzzy)
    if vr == "UI":
        values = _split(value, ",\\")
        _check_each((v for v in values if not WILDCARDS & set(v)), _UID, param, "a UID")
        _check_each(values, _UID_PATTERN, param, "a UID or UID pattern")
        return ValueMatch(values)
    if vr in _INTEGER_VRS or vr in _DECIMAL_VRS:
        return ValueMatch(_number_values(_split(value, "\\"), vr, param))
    return ValueMatch(_split(value, ",\\" if vr == "CS" else "\\"))


# --- the request -----------------------------------------------------------------------------


def _integer(param: str, raw: str, minimum: int) -> int:
    if not re.fullmatch(r"\d{1,9}", raw.strip()) or int(raw) < minimum:
        raise BadRequest(f"query parameter {param!r} must be an integer of at least {minimum}")
    return int(raw)


def _fuzzy(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in ("true", "false"):
        raise BadRequest("query parameter 'fuzzymatching' must be true or false")
    return lowered == "true"


def _includes(values: Sequence[str]) -> tuple[tuple[Attribute, ...], bool]:
    attributes: list[Attribute] = []
    include_all = False
    for raw in values:
        for name in _split(raw, ","):
            if name.lower() == "all":
                include_all = True
            else:
                attributes.append(resolve_attribute(name, f"includefield={name}"))
    return tuple(attributes), include_all


def _merge_date_time(terms: list[Term]) -> list[Term]:
    """Combine a date range with its paired time range (PS3.4 C.2.2.2.5.1)."""
    by_tag = {t.attribute.path: t for t in terms}
    merged: list[Term] = []
    absorbed: set[tuple[str, ...]] = set()
    for term in terms:
        time_tag = DATE_TIME_PAIRS.get(term.attribute.tag)
        partner = by_tag.get((time_tag,)) if time_tag and len(term.attribute.path) == 1 else None
        date, time = term.matcher, partner.matcher if partner else None
        if partner is None or not isinstance(date, RangeMatch) or not isinstance(time, RangeMatch):
            merged.append(term)
            continue
        low = None if date.low is None else date.low + (time.low or "")
        high = None if date.high is None else date.high + (time.high or "")
        combined = RangeMatch(low, high, combined=True)
        merged.append(Term(term.param, term.attribute, combined, partner.attribute))
        absorbed.add(partner.attribute.path)
    return [t for t in merged if t.merged is not None or t.attribute.path not in absorbed]


def parse_query(
    items: Sequence[tuple[str, str]],
    level: Level,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> QidoQuery:
    """Parse the query string ``items`` (decoded name/value pairs, in order)."""
    options: dict[str, list[str]] = {}
    keys: list[tuple[str, str]] = []
    for name, value in items:
        lowered = name.strip().lower()
        if lowered in (LIMIT, OFFSET, INCLUDEFIELD, FUZZY):
            options.setdefault(lowered, []).append(value)
        elif lowered not in IGNORED:
            keys.append((name.strip(), value))
    for option in (LIMIT, OFFSET, FUZZY):
        if len(options.get(option, [])) > 1:
            raise BadRequest(f"query parameter {option!r} is given more than once")
    fuzzy = _fuzzy(options[FUZZY][0]) if FUZZY in options else False
    if len(keys) > MAX_TERMS:
        raise BadRequest(f"at most {MAX_TERMS} matching keys are allowed")
    terms: list[Term] = []
    seen: set[tuple[str, ...]] = set()
    for name, value in keys:
        attribute = resolve_attribute(name)
        if attribute.path in seen:
            raise BadRequest(f"query parameter {name!r}: attribute given more than once")
        seen.add(attribute.path)
        matcher = parse_matcher(attribute, value, fuzzy=fuzzy, param=name)
        terms.append(Term(name, attribute, matcher))
    include, include_all = _includes(options.get(INCLUDEFIELD, []))
    final = tuple(_merge_date_time(terms))
    returned = {t.attribute.tag for t in final} | {t.merged.tag for t in final if t.merged}
    return QidoQuery(
        level=level,
        study_uid=study_uid,
        series_uid=series_uid,
        terms=final,
        include=include,
        include_all=include_all,
        fuzzy=fuzzy,
        limit=_integer(LIMIT, options[LIMIT][0], 1) if LIMIT in options else None,
        offset=_integer(OFFSET, options[OFFSET][0], 0) if OFFSET in options else 0,
        returned_tags=frozenset(returned | {a.tag for a in include}),
    )
