"""What QIDO-RS answers carry: attributes, computed values, URLs, paging, media types, errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from skypacs.dicomweb.multipart import boundary_from_content_type
from tests.integration.test_qido_corpus import (
    CT_IMAGE,
    EVERY,
    Archive,
    archive,
    loaded_archive,
)

pytestmark = pytest.mark.integration
__all__ = ["archive"]

NS = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}
STUDY_LIST_TAGS = {
    "0020000D", "00080020", "00080030", "00080050", "00100010", "00100020", "00100030",
    "00080061", "00081030", "00080090", "00201206", "00201208", "00081190",
}  # fmt: skip
SERIES_LIST_TAGS = {"00080060", "00200011", "0008103E", "00080021", "00201209", "0020000E"}


def _nulls(value: Any) -> bool:
    """True when a None hides anywhere in a DICOM JSON value."""
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_nulls(v) for v in value.values())
    if isinstance(value, list):
        return any(_nulls(v) for v in value)
    return False


async def _one(archive: Archive, path: str, params: dict[str, str], **headers: str) -> Any:
    response = await archive.get(path, params, **headers)
    assert response.status_code == 200, response.text
    (result,) = response.json()
    return result


async def test_study_results_carry_what_study_lists_show(archive: Archive) -> None:
    result = await _one(archive, "/studies", {"PatientID": "P001"})
    assert set(result) >= STUDY_LIST_TAGS
    assert result["00100010"]["Value"] == [{"Alphabetic": "Smith^John"}]
    assert result["00080061"]["Value"] == ["CT"]
    assert result["00201206"]["Value"] == [2]
    assert result["00201208"]["Value"] == [3]
    assert result["00080056"]["Value"] == ["ONLINE"]
    assert result["00081030"]["Value"] == ["CT Chest"]
    assert result["00100030"] == {"vr": "DA"}
    assert not _nulls(list(result.values()))
    assert "00080060" not in result


async def test_includefield_as_tags_keywords_repeated_and_comma_separated(archive: Archive) -> None:
    params = [("PatientID", "P002"), ("includefield", "00081030,SOPClassesInStudy"),
              ("includefield", "PatientSex"), ("includefield", "00080060")]  # fmt: skip
    response = await archive.get("/studies", params)
    (result,) = response.json()
    assert sorted(result["00080062"]["Value"]) == sorted(
        ["1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.88.11"]
    )
    assert result["00100040"]["vr"] == "CS"
    assert result["00080060"] == {"vr": "CS"}


async def test_includefield_all_serves_the_indexed_json(archive: Archive) -> None:
    study = await _one(archive, "/studies", {"PatientID": "P001", "includefield": "all"})
    assert study["00080062"]["Value"] == [CT_IMAGE]
    assert study["00080005"]["Value"] == ["ISO_IR 192"]
    instance_uid = archive.corpus.instances[("smith_john", 1)][0]
    instance = await _one(
        archive, "/instances", {"SOPInstanceUID": instance_uid, "includefield": "all"}
    )
    assert instance["00280010"]["Value"] == [128]
    assert instance["00181030"] == {"vr": "LO", "Value": ["CHEST_LOW_DOSE"]}
    assert instance["00400275"]["Value"][0]["00400009"]["Value"] == ["SPS1"]
    assert not any(tag.startswith("7FE0") for tag in instance)
    assert not _nulls(list(instance.values()))


async def test_series_and_instance_defaults_and_computed_counts(archive: Archive) -> None:
    corpus = archive.corpus
    study, series = corpus.studies["smith_john"], corpus.series[("smith_john", 1)]
    result = await _one(archive, f"/studies/{study}/series", {"SeriesNumber": "1"})
    assert set(result) >= SERIES_LIST_TAGS
    assert result["00201209"]["Value"] == [2]
    assert result["00400275"]["Value"][0]["00401001"]["Value"] == ["RP1"]
    assert "00100010" not in result  # scoped to a study: no study attributes
    unscoped = await _one(archive, "/series", {"SeriesInstanceUID": series})
    assert unscoped["00100010"]["Value"] == [{"Alphabetic": "Smith^John"}]
    instance = await _one(
        archive, f"/studies/{study}/series/{series}/instances", {"InstanceNumber": "1"}
    )
    assert instance["00080016"]["Value"] == [CT_IMAGE]
    assert instance["00280011"]["Value"] == [128]
    assert instance["00280008"] == {"vr": "IS"}
    assert "0020000E" not in instance
    assert "00100010" not in instance


async def test_retrieve_urls_use_the_public_base(archive: Archive) -> None:
    corpus = archive.corpus
    study, series = corpus.studies["smith_john"], corpus.series[("smith_john", 2)]
    (instance,) = corpus.instances[("smith_john", 2)]
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pacs.example"}
    base = "https://pacs.example/dicom-web"
    result = await _one(archive, "/studies", {"StudyInstanceUID": study}, **headers)
    assert result["00081190"]["Value"] == [f"{base}/studies/{study}"]
    result = await _one(archive, "/series", {"SeriesInstanceUID": series}, **headers)
    assert result["00081190"]["Value"] == [f"{base}/studies/{study}/series/{series}"]
    result = await _one(archive, "/instances", {"SOPInstanceUID": instance}, **headers)
    expected = f"{base}/studies/{study}/series/{series}/instances/{instance}"
    assert result["00081190"]["Value"] == [expected]


@pytest.mark.parametrize(("path", "size"), [("/studies", 2), ("/series", 3), ("/instances", 4)])
async def test_paging_returns_every_result_exactly_once(
    archive: Archive, path: str, size: int
) -> None:
    everything = await archive.get(path, {"includefield": "all"})
    assert "warning" not in everything.headers
    key = {"/studies": "0020000D", "/series": "0020000E", "/instances": "00080018"}[path]
    expected = [r[key]["Value"][0] for r in everything.json()]
    seen: list[str] = []
    offset = 0
    while True:
        page = await archive.get(path, {"limit": str(size), "offset": str(offset)})
        assert page.status_code == 200
        batch = [r[key]["Value"][0] for r in page.json()]
        if not batch:
            break
        more = len(seen) + len(batch) < len(expected)
        assert ("warning" in page.headers) == more
        seen.extend(batch)
        offset += len(batch)
    assert seen == expected
    assert len(set(seen)) == len(seen)


async def test_warning_when_cut_by_limit(archive: Archive) -> None:
    response = await archive.get("/studies", {"limit": "1"}, Host="archive.example:8042")
    assert len(response.json()) == 1
    warning = response.headers["warning"]
    assert re.fullmatch(r'299 archive\.example:8042: "[^"]+"', warning)
    assert "additional results" in warning


async def test_configured_maximum_caps_every_page(
    pg_server_dsn: str, pg_template: str, tmp_path: Path
) -> None:
    async with loaded_archive(pg_server_dsn, pg_template, tmp_path, max_results=4) as small:
        unlimited = await small.get("/studies")
        assert len(unlimited.json()) == 4
        assert "maximum" in unlimited.headers["warning"]
        over = await small.get("/studies", {"limit": "100"})
        assert len(over.json()) == 4
        assert "warning" in over.headers
        labels = set()
        for offset in range(0, 12, 4):
            page = await small.get("/studies", {"offset": str(offset)})
            labels |= {small.corpus.label_of(r["0020000D"]["Value"][0]) for r in page.json()}
        assert labels == EVERY


async def test_native_dicom_model_xml(archive: Archive) -> None:
    accept = 'multipart/related; type="application/dicom+xml"'
    response = await archive.get("/studies", {"PatientID": "H31EXAMPLE"}, Accept=accept)
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith('multipart/related; type="application/dicom+xml"')
    boundary = boundary_from_content_type(content_type)
    parts = response.content.split(f"--{boundary}".encode())[1:-1]
    assert len(parts) == 1
    headers, _, body = parts[0].strip(b"\r\n").partition(b"\r\n\r\n")
    assert headers == b"Content-Type: application/dicom+xml"
    root = ET.fromstring(body)
    name = root.find("d:DicomAttribute[@tag='00100010']/d:PersonName", NS)
    assert name is not None
    assert name.findtext("d:Ideographic/d:FamilyName", namespaces=NS) == "山田"
    assert name.findtext("d:Phonetic/d:GivenName", namespaces=NS) == "たろう"
    attr = root.find("d:DicomAttribute[@tag='00201208']", NS)
    assert attr is not None
    assert attr.get("keyword") == "NumberOfStudyRelatedInstances"
    assert attr.findtext("d:Value", namespaces=NS) == "1"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/dicom+json", "application/dicom+json"),
        ("application/json", "application/json"),
        ("*/*", "application/dicom+json"),
        ("image/png, application/dicom+json;q=0.5", "application/dicom+json"),
    ],
)
async def test_accept_negotiation(archive: Archive, accept: str, expected: str) -> None:
    response = await archive.get("/studies", {"PatientID": "P001"}, Accept=accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == expected


async def test_unacceptable_media_type_is_406(archive: Archive) -> None:
    response = await archive.get("/studies", None, Accept="image/png")
    assert response.status_code == 406


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/studies", {"NoSuchKeyword": "x"}, "NoSuchKeyword"),
        ("/studies", {"0010001": "x"}, "0010001"),
        ("/studies", {"StudyDate": "2020-01-01"}, "StudyDate"),
        ("/studies", {"StudyDate": "20201231-20200101"}, "StudyDate"),
        ("/studies", {"StudyTime": "25h"}, "StudyTime"),
        ("/studies", {"StudyInstanceUID": "1.2.abc"}, "StudyInstanceUID"),
        ("/studies", {"limit": "-1"}, "limit"),
        ("/studies", {"limit": "ten"}, "limit"),
        ("/studies", {"offset": "-5"}, "offset"),
        ("/studies", {"fuzzymatching": "maybe"}, "fuzzymatching"),
        ("/studies", {"includefield": "NotAnAttribute"}, "includefield"),
        ("/series", {"SeriesNumber": "two"}, "SeriesNumber"),
        ("/series", {"PatientName.FamilyName": "x"}, "PatientName.FamilyName"),
        ("/series", {"RequestAttributesSequence": "SPS1"}, "RequestAttributesSequence"),
        ("/instances", {"InstanceNumber": "1.5"}, "InstanceNumber"),
        ("/instances", {"PatientID": "x" * 2000}, "PatientID"),
    ],
)
async def test_malformed_queries_are_400_naming_the_parameter(
    archive: Archive, path: str, params: dict[str, str], named: str
) -> None:
    response = await archive.get(path, params)
    assert response.status_code == 400, response.text
    assert named in response.json()["detail"]


async def test_invalid_utf8_is_400(archive: Archive) -> None:
    response = await archive.client.get("/dicom-web/studies?PatientName=%FF%FE")
    assert response.status_code == 400
    assert "PatientName" in response.json()["detail"]


async def test_malformed_path_uid_is_400(archive: Archive) -> None:
    response = await archive.get("/studies/1.2.x/series")
    assert response.status_code == 400
