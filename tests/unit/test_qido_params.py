"""Parsing QIDO-RS query parameters into matchers (PS3.18 §8.3.4, PS3.4 C.2.2.2)."""

from __future__ import annotations

import pytest

from skypacs.dicomweb.qido_params import (
    Level,
    NameMatch,
    RangeMatch,
    Universal,
    ValueMatch,
    parse_query,
    resolve_attribute,
)
from skypacs.errors import BadRequest

pytestmark = pytest.mark.unit


def _matcher(key: str, value: str, **extra: str) -> object:
    query = parse_query([(key, value), *extra.items()], Level.STUDY)
    (term,) = query.terms
    return term.matcher


def test_keywords_tags_and_sequence_paths_resolve_alike() -> None:
    assert resolve_attribute("PatientID") == resolve_attribute("00100020")
    assert resolve_attribute("00100020").keyword == "PatientID"
    nested = resolve_attribute("RequestAttributesSequence.ScheduledProcedureStepID")
    assert nested.path == ("00400275", "00400009")
    assert nested == resolve_attribute("00400275.00400009")
    assert nested.vr == "SH"
    assert resolve_attribute("0009101a").vr == "UN"


@pytest.mark.parametrize("name", ["Nope", "0010001", "00100000", "PatientID.PatientName", "a..b"])
def test_bad_attribute_names(name: str) -> None:
    with pytest.raises(BadRequest, match="query parameter"):
        resolve_attribute(name)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("PatientID", "", Universal()),
        ("PatientID", "*", Universal()),
        ("PatientID", "P1", ValueMatch(("P1",))),
        ("PatientID", "P*", ValueMatch(("P*",))),
        ("StudyInstanceUID", "1.2,1.3\\1.4", ValueMatch(("1.2", "1.3", "1.4"))),
        ("ModalitiesInStudy", "CT\\MR", ValueMatch(("CT", "MR"))),
        ("ModalitiesInStudy", "CT,MR", ValueMatch(("CT", "MR"))),
        ("SeriesNumber", "007", ValueMatch(("7",))),
        ("StudyDate", "20200101", RangeMatch("20200101", "20200101")),
        ("StudyDate", "20200101-", RangeMatch("20200101", None)),
        ("StudyDate", "-20200101", RangeMatch(None, "20200101")),
        ("StudyTime", "10:30-1200", RangeMatch("1030", "1200")),
        ("AcquisitionDateTime", "20200101-20200102", RangeMatch("20200101", "20200102")),
        (
            "AcquisitionDateTime",
            "20200101120000-0500",
            RangeMatch("20200101120000", "20200101120000"),
        ),
        ("PatientName", "Smith^J*\\Doe", NameMatch(("Smith^J*", "Doe"), False)),
    ],
)
def test_matchers(key: str, value: str, expected: object) -> None:
    assert _matcher(key, value) == expected


def test_fuzzy_applies_to_person_names() -> None:
    assert _matcher("PatientName", "smi", fuzzymatching="true") == NameMatch(("smi",), True)


def test_date_and_time_ranges_combine() -> None:
    query = parse_query(
        [("StudyDate", "20200101-20200131"), ("StudyTime", "0800-1700")], Level.STUDY
    )
    (term,) = query.terms
    assert term.matcher == RangeMatch("202001010800", "202001311700", combined=True)
    assert term.merged is not None
    assert term.merged.keyword == "StudyTime"
    assert query.returned_tags >= {"00080020", "00080030"}


def test_options() -> None:
    query = parse_query(
        [("limit", "10"), ("offset", "20"), ("includefield", "00081030,Modality"),
         ("includefield", "all"), ("accept", "application/dicom+json")],
        Level.SERIES,
        study_uid="1.2.3",
    )  # fmt: skip
    assert (query.limit, query.offset, query.include_all) == (10, 20, True)
    assert [a.keyword for a in query.include] == ["StudyDescription", "Modality"]
    assert query.terms == ()


@pytest.mark.parametrize(
    ("items", "named"),
    [
        ([("limit", "0")], "limit"),
        ([("limit", "-1")], "limit"),
        ([("offset", "x")], "offset"),
        ([("limit", "1"), ("limit", "2")], "limit"),
        ([("fuzzymatching", "yes")], "fuzzymatching"),
        ([("StudyDate", "2020")], "StudyDate"),
        ([("StudyDate", "20200201-20200101")], "StudyDate"),
        ([("StudyDate", "2020*")], "StudyDate"),
        ([("StudyTime", "99999999")], "StudyTime"),
        ([("StudyInstanceUID", "1.2.x")], "StudyInstanceUID"),
        ([("SeriesNumber", "one")], "SeriesNumber"),
        ([("PatientID", "a"), ("00100020", "b")], "00100020"),
        ([("PatientID", "bad\x01")], "PatientID"),
        ([("PatientID", "bad\ufffd")], "PatientID"),
        ([("RequestAttributesSequence", "x")], "RequestAttributesSequence"),
        ([("includefield", "Bogus")], "Bogus"),
    ],
)
def test_malformed_parameters_name_the_parameter(items: list[tuple[str, str]], named: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_query(items, Level.STUDY)
    assert named in caught.value.detail
