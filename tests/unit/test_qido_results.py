"""QIDO-RS result data sets (DICOM JSON) and their Native DICOM Model XML form."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from skypacs.dicomweb.native_xml import NAMESPACE, dataset_to_xml
from skypacs.dicomweb.qido_params import Level, parse_query
from skypacs.dicomweb.qido_results import instance_tags, result_dataset, without_bulk
from skypacs.index.search import SearchHit

pytestmark = pytest.mark.unit

NS = {"d": NAMESPACE}
ROOT = "https://pacs.example/dicom-web"
HIT = SearchHit(
    study_uid="1.2.3",
    study_attrs={
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane", "Ideographic": "杜^简"}]},
        "00080005": {"vr": "CS", "Value": ["ISO_IR 100"]},
        "00101010": {"vr": "AS", "Value": ["042Y"]},
    },
    num_series=2,
    study_instances=7,
    modalities=["MR", "CT"],
    sop_classes=["1.2.840.10008.5.1.4.1.1.2"],
    series_uid="1.2.3.4",
    series_attrs={"00080060": {"vr": "CS", "Value": ["CT"]}},
    series_instances=5,
)


def test_study_result_defaults_and_computed_values() -> None:
    result = result_dataset(HIT, parse_query([], Level.STUDY), ROOT)
    assert result["00081190"] == {"vr": "UR", "Value": [f"{ROOT}/studies/1.2.3"]}
    assert result["00080061"]["Value"] == ["CT", "MR"]
    assert result["00201206"]["Value"] == [2]
    assert result["00201208"]["Value"] == [7]
    assert result["00080020"] == {"vr": "DA"}
    assert "00080201" not in result  # conditional, absent here
    assert "00101010" not in result
    assert "00080060" not in result
    assert list(result) == sorted(result)


def test_includefield_all_and_character_set() -> None:
    result = result_dataset(HIT, parse_query([("includefield", "all")], Level.STUDY), ROOT)
    assert result["00101010"]["Value"] == ["042Y"]
    assert result["00080005"]["Value"] == ["ISO_IR 192"]
    assert result["00080062"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"]


def test_series_result_scoped_and_unscoped() -> None:
    scoped = result_dataset(HIT, parse_query([], Level.SERIES, study_uid="1.2.3"), ROOT)
    assert scoped["00201209"]["Value"] == [5]
    assert scoped["00081190"]["Value"] == [f"{ROOT}/studies/1.2.3/series/1.2.3.4"]
    assert "00100010" not in scoped
    unscoped = result_dataset(HIT, parse_query([], Level.SERIES), ROOT)
    assert unscoped["00100010"] == HIT.study_attrs["00100010"]


def test_instance_tags_follow_the_query() -> None:
    assert instance_tags(parse_query([("includefield", "all")], Level.INSTANCE)) is None
    tags = instance_tags(parse_query([("includefield", "Rows")], Level.INSTANCE, study_uid="1"))
    assert tags is not None
    assert {"00280010", "00080018", "0020000E"} <= tags


def test_bulk_references_are_dropped_at_every_depth() -> None:
    dataset = {
        "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/7FE00010"},
        "00540016": {"vr": "SQ", "Value": [{"00181072": {"vr": "TM", "Value": ["1"]},
                                            "00282000": {"vr": "OB", "BulkDataURI": "x"}}]},
    }  # fmt: skip
    assert without_bulk(dataset) == {
        "00540016": {"vr": "SQ", "Value": [{"00181072": {"vr": "TM", "Value": ["1"]}}]}
    }


def test_native_dicom_model() -> None:
    dataset = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane^^Dr", "Ideographic": "杜^简"}]},
        "00200011": {"vr": "IS", "Value": [3]},
        "00081030": {"vr": "LO"},
        "00400275": {"vr": "SQ", "Value": [{"00400009": {"vr": "SH", "Value": ["S<1>&"]}}]},
        "00420011": {"vr": "OB", "BulkDataURI": "https://x/bulk"},
    }
    root = ET.fromstring(dataset_to_xml(dataset))
    assert root.tag == f"{{{NAMESPACE}}}NativeDicomModel"
    name = root.find("d:DicomAttribute[@tag='00100010']/d:PersonName[@number='1']", NS)
    assert name is not None
    assert name.findtext("d:Alphabetic/d:FamilyName", namespaces=NS) == "Doe"
    assert name.findtext("d:Alphabetic/d:NamePrefix", namespaces=NS) == "Dr"
    assert name.findtext("d:Ideographic/d:GivenName", namespaces=NS) == "简"
    number = root.find("d:DicomAttribute[@tag='00200011']", NS)
    assert number is not None
    assert number.get("keyword") == "SeriesNumber"
    assert number.findtext("d:Value[@number='1']", namespaces=NS) == "3"
    empty = root.find("d:DicomAttribute[@tag='00081030']", NS)
    assert empty is not None
    assert list(empty) == []
    step = root.find("d:DicomAttribute[@tag='00400275']/d:Item[@number='1']/d:DicomAttribute", NS)
    assert step is not None
    assert step.findtext("d:Value", namespaces=NS) == "S<1>&"
    bulk = root.find("d:DicomAttribute[@tag='00420011']/d:BulkData", NS)
    assert bulk is not None
    assert bulk.get("uri") == "https://x/bulk"
