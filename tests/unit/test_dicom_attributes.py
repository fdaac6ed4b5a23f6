"""Index columns extracted from data sets."""

from __future__ import annotations

import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from skypacs.dicom.attributes import instance_index_fields
from skypacs.errors import InvalidUID
from tests.unit.dicom_samples import image_dataset, part10_bytes, scan

pytestmark = pytest.mark.unit


def _scanned(path: str | None) -> dict[str, object]:
    assert path is not None
    with open(path, "rb") as handle:
        _, result = scan(handle.read())
    return instance_index_fields(result.dataset)


def test_ct_instance_fields() -> None:
    fields = _scanned(get_testdata_file("CT_small.dcm"))
    assert fields["study_uid"] == "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    assert fields["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"
    assert fields["patient_name"] == "CompressedSamples^CT1"
    assert fields["patient_id"] == "1CT1"
    assert fields["modality"] == "CT"
    assert fields["series_number"] == 1
    assert fields["instance_number"] == 1
    assert fields["number_of_frames"] is None
    assert fields["study_date"] == "20040119"
    assert set(fields) >= {"issuer", "accession_number", "body_part_examined", "series_time"}


def test_multi_frame_and_unicode_names() -> None:
    frames = _scanned(get_testdata_file("rtdose.dcm"))
    assert frames["number_of_frames"] == 15
    name = _scanned(get_charset_files("chrH31.dcm")[0])["patient_name"]
    assert name == "Yamada^Tarou=山田^太郎=やまだ^たろう"


def test_malformed_values_become_none() -> None:
    ds = image_dataset(AccessionNumber="", StudyDescription="  ")
    ds[0x00200013] = RawDataElement(Tag(0x00200013), "IS", 4, b"abc ", 0, False, True)
    ds[0x00200011] = RawDataElement(Tag(0x00200011), "IS", 2, b"1.5", 0, False, True)
    fields = instance_index_fields(ds)
    assert fields["instance_number"] is None
    assert fields["series_number"] is None
    assert fields["accession_number"] is None
    assert fields["study_description"] is None
    assert fields["patient_sex"] is None


def test_fields_survive_a_scan_of_written_bytes() -> None:
    ds = image_dataset(SeriesNumber="7", InstanceNumber="12", PatientSex="F")
    _, result = scan(part10_bytes(ds))
    fields = instance_index_fields(result.dataset)
    assert (fields["series_number"], fields["instance_number"]) == (7, 12)
    assert fields["patient_sex"] == "F"
    assert fields["sop_instance_uid"] == ds.SOPInstanceUID


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SOPClassUID"])
def test_missing_or_bad_required_uids_are_refused(keyword: str) -> None:
    ds = image_dataset()
    delattr(ds, keyword)
    with pytest.raises(InvalidUID, match=keyword) as caught:
        instance_index_fields(ds)
    assert caught.value.status_code == 400
    ds = image_dataset()
    ds[keyword].value = "1.2.abc"
    with pytest.raises(InvalidUID, match=keyword):
        instance_index_fields(ds)
