"""From a scanned Part 10 file to the index record of one stored instance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from skypacs.dicom.attributes import instance_index_fields
from skypacs.dicom.dicom_json import dataset_to_json
from skypacs.dicom.part10_scanner import ScanResult
from skypacs.dicom.transfer_syntaxes import get_transfer_syntax
from skypacs.index.hierarchy import PatientFields, SeriesFields, StudyFields
from skypacs.index.instances import InstanceRecord
from skypacs.storage import PutResult

#: Patient and study level attributes (PS3.3 C.7.1.1, C.7.2.1, C.7.2.2) kept on the
#: study row for study-level QIDO results and includefield.
STUDY_LEVEL_TAGS: Final = frozenset(
    {
        "00080020", "00080030", "00080050", "00080051", "00080090", "00080096",
        "00081030", "00081032", "00081060", "00081080", "00100010", "00100020",
        "00100021", "00100024", "00100030", "00100032", "00100040", "00101000",
        "00101001", "00101010", "00101020", "00101030", "00101040", "00102160",
        "00102180", "001021B0", "00104000", "0020000D", "00200010", "00321032",
        "00321060", "00401012", "00080005",
    }
)  # fmt: skip

#: Series level attributes (PS3.3 C.7.3.1, C.7.3.2 and QIDO's series keys).
SERIES_LEVEL_TAGS: Final = frozenset(
    {
        "00080021", "00080031", "00080060", "0008103E", "00081050", "00081070",
        "00081111", "00180015", "00185100", "0020000E", "00200011", "00200060",
        "00400244", "00400245", "00400254", "00400275", "00080005", "00081090",
        "00080070",
    }
)  # fmt: skip


def _level(metadata: dict[str, Any], tags: frozenset[str]) -> dict[str, Any]:
    return {tag: value for tag, value in metadata.items() if tag in tags}


def build_record(
    scan: ScanResult,
    stored: PutResult,
    *,
    bulk_threshold: int,
    fields: Mapping[str, Any] | None = None,
) -> InstanceRecord:
    """Everything the index keeps about ``scan`` once its bytes are ``stored``.

    ``fields`` are the data set's :func:`instance_index_fields` when the caller
    already has them (they all precede Pixel Data, so a header peek gives them).
    """
    if fields is None:
        fields = instance_index_fields(scan.dataset)
    metadata = dataset_to_json(
        scan.dataset, bulk_tags=scan.bulk_ranges.keys(), bulk_threshold=bulk_threshold
    )
    syntax = get_transfer_syntax(scan.transfer_syntax_uid)
    addressable = syntax is None or not syntax.is_deflated
    pixel = scan.pixel_data
    return InstanceRecord(
        sop_instance_uid=fields["sop_instance_uid"],
        sop_class_uid=fields["sop_class_uid"],
        study_uid=fields["study_uid"],
        series_uid=fields["series_uid"],
        transfer_syntax_uid=scan.transfer_syntax_uid,
        patient=PatientFields(
            patient_id=fields["patient_id"] or "",
            issuer=fields["issuer"] or "",
            patient_name=fields["patient_name"],
            birth_date=fields["patient_birth_date"],
            sex=fields["patient_sex"],
        ),
        study=StudyFields(
            study_uid=fields["study_uid"],
            study_date=fields["study_date"],
            study_time=fields["study_time"],
            accession_number=fields["accession_number"],
            study_id=fields["study_id"],
            study_description=fields["study_description"],
            referring_physician_name=fields["referring_physician_name"],
            attrs=_level(metadata, STUDY_LEVEL_TAGS),
        ),
        series=SeriesFields(
            series_uid=fields["series_uid"],
            modality=fields["modality"],
            series_number=fields["series_number"],
            series_description=fields["series_description"],
            series_date=fields["series_date"],
            series_time=fields["series_time"],
            body_part_examined=fields["body_part_examined"],
            attrs=_level(metadata, SERIES_LEVEL_TAGS),
        ),
        instance_number=fields["instance_number"],
        number_of_frames=fields["number_of_frames"],
        size_bytes=stored.size,
        sha256=stored.sha256,
        pixel_data_offset=pixel.value_offset if pixel is not None and addressable else None,
        frame_ranges=pixel.frames if pixel is not None and addressable else None,
        bulk_ranges={tag: list(span) for tag, span in scan.bulk_ranges.items()},
        metadata=metadata,
    )
