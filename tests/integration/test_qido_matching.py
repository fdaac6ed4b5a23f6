"""Each PS3.4 C.2.2.2 matching type at each QIDO-RS level returns exactly the expected set."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_qido_corpus import (
    CHARSET,
    CT_IMAGE,
    EVERY,
    MR_IMAGE,
    SYNTHETIC,
    Archive,
    archive,
)

pytestmark = pytest.mark.integration
__all__ = ["archive"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # universal matching
        ({}, EVERY),
        ({"PatientID": ""}, EVERY),
        ({"PatientName": "*"}, EVERY),
        # single value, keywords and tags as keys
        ({"PatientID": "P001"}, {"smith_john"}),
        ({"00100020": "P003"}, {"muller"}),
        ({"AccessionNumber": "XYZ-9"}, {"smith_anna"}),
        ({"StudyID": "muller"}, {"muller"}),
        ({"StudyDescription": "MR Brain"}, {"smythe_jane"}),
        # wildcards anywhere, case-sensitive outside person names
        ({"PatientID": "P00?"}, {"smith_john", "smythe_jane", "muller", "smith_anna", "angstrom"}),
        ({"AccessionNumber": "ACC00*"}, SYNTHETIC - {"smith_anna"}),
        ({"StudyDescription": "*Brain*"}, {"smythe_jane"}),
        ({"StudyDescription": "*brain*"}, set()),
        ({"StudyDescription": "?T*"}, {"smith_john", "smith_long"}),
        # person names: component-aware, case-insensitive
        ({"PatientName": "Smith"}, {"smith_john", "smith_anna", "smith_long"}),
        ({"PatientName": "smith^john"}, {"smith_john"}),
        ({"PatientName": "Smith^Jo"}, {"smith_long"}),
        ({"PatientName": "Smith^Jo*"}, {"smith_john", "smith_long"}),
        ({"PatientName": "Smith^^Middle"}, {"smith_long"}),
        ({"PatientName": "^Anna"}, {"smith_anna"}),
        ({"PatientName": "*smi*"}, {"smith_john", "smith_anna", "smith_long"}),
        ({"PatientName": "Sm*"}, {"smith_john", "smythe_jane", "smith_anna", "smith_long"}),
        ({"PatientName": "*an*"}, {"smythe_jane", "smith_anna"}),
        ({"PatientName": "Sm?th"}, {"smith_john", "smith_anna", "smith_long"}),
        (
            {"PatientName": "Smith\\Smythe"},
            {"smith_john", "smith_anna", "smith_long", "smythe_jane"},
        ),
        ({"PatientName": "Muller"}, set()),
        ({"ReferringPhysicianName": "Doe"}, {"muller"}),
        # fuzzy matching only adds: folded case and accents, per-component prefixes
        ({"PatientName": "Muller", "fuzzymatching": "true"}, {"muller"}),
        ({"PatientName": "jurg", "fuzzymatching": "true"}, {"muller"}),
        ({"PatientName": "angstrom eric", "fuzzymatching": "true"}, {"angstrom"}),
        ({"PatientName": "eric^ang", "fuzzymatching": "true"}, {"angstrom"}),
        ({"PatientName": "aneas", "fuzzymatching": "true"}, {"german"}),
        ({"PatientName": "yama", "fuzzymatching": "true"}, {"japanese"}),
        (
            {"PatientName": "Smith", "fuzzymatching": "true"},
            {"smith_john", "smith_anna", "smith_long"},
        ),
        ({"PatientName": "Smith^John", "fuzzymatching": "false"}, {"smith_john"}),
        # UID lists, separated by ',' or '\'
        ({"StudyInstanceUID": "{smith_john},{muller}"}, {"smith_john", "muller"}),
        ({"0020000D": "{angstrom}\\{japanese}"}, {"angstrom", "japanese"}),
        # dates across years: single value, closed and open ranges
        ({"StudyDate": "20200110"}, {"smythe_jane"}),
        ({"StudyDate": "20200101-20201231"}, {"smythe_jane", "muller"}),
        ({"StudyDate": "-20190101"}, {"angstrom"}),
        ({"StudyDate": "20210101-"}, {"smith_anna", "smith_long"}),
        ({"StudyTime": "0800-0900"}, {"smythe_jane", "angstrom"}),
        ({"StudyTime": "2300-"}, {"muller"}),
        # combined StudyDate + StudyTime: one date-time range (PS3.4 C.2.2.2.5.1)
        (
            {"StudyDate": "20190315-20200110", "StudyTime": "1000-0900"},
            {"smith_john", "smythe_jane"},
        ),
        ({"StudyDate": "20190315-20200110", "StudyTime": "1100-0800"}, set()),
        (
            {"StudyDate": "20190101-20201231", "StudyTime": "2000-"},
            {"smith_john", "smythe_jane", "muller"},
        ),
        # modalities in study, lists and wildcards, with a date range
        ({"ModalitiesInStudy": "CT"}, {"smith_john", "muller", "smith_long"}),
        ({"ModalitiesInStudy": "SR\\US"}, {"smythe_jane", "angstrom"}),
        ({"00080061": "PT,US"}, {"muller", "angstrom"}),
        ({"ModalitiesInStudy": "P*"}, {"muller"}),
        ({"StudyDate": "20200101-", "ModalitiesInStudy": "MR"}, {"smythe_jane", "smith_anna"}),
        ({"SOPClassesInStudy": MR_IMAGE}, {"smythe_jane", "smith_anna"}),
        ({"ModalitiesInStudy": "OT"}, CHARSET),
        # keys of lower levels: a study matches when one of its series/instances does
        ({"SeriesDescription": "PET"}, {"muller"}),
        ({"Modality": "SR"}, {"smythe_jane"}),
        ({"ProtocolName": "BRAIN*"}, {"smythe_jane"}),
        # several keys: all must match
        ({"PatientName": "Smith", "StudyDate": "-20200101"}, {"smith_john"}),
        ({"PatientID": "P001", "ModalitiesInStudy": "MR"}, set()),
    ],
)
async def test_study_matching(archive: Archive, params: dict[str, str], expected: set[str]) -> None:
    uids = archive.corpus.studies
    resolved = {key: value.format(**uids) for key, value in params.items()}
    assert await archive.studies(resolved) == expected


async def _series_keys(archive: Archive, path: str, params: Any) -> set[tuple[str, int]]:
    response = await archive.get(path, params)
    assert response.status_code == 200, response.text
    by_uid = {uid: key for key, uid in archive.corpus.series.items()}
    return {by_uid[r["0020000E"]["Value"][0]] for r in response.json()}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"Modality": "CT"},
            {("smith_john", 1), ("smith_john", 2), ("muller", 1), ("smith_long", 3)},
        ),
        ({"SeriesNumber": "2"}, {("smith_john", 2), ("muller", 2)}),
        (
            {"SeriesNumber": "1\\3", "Modality": "CT"},
            {("smith_john", 1), ("muller", 1), ("smith_long", 3)},
        ),
        ({"SeriesDescription": "*o*"}, {("smith_john", 2), ("smythe_jane", 99)}),
        ({"RequestAttributesSequence.ScheduledProcedureStepID": "SPS1"}, {("smith_john", 1)}),
        ({"00400275.00401001": "RP*"}, {("smith_john", 1), ("smith_anna", 1)}),
        ({"PatientName": "Smith^Anna"}, {("smith_anna", 1)}),
        ({"StudyDate": "20201231", "Modality": "PT"}, {("muller", 2)}),
        ({"SeriesDate": "20190101-20191231"}, {("smith_john", 1), ("smith_john", 2)}),
        ({"SOPClassUID": MR_IMAGE}, {("smythe_jane", 1), ("smith_anna", 1)}),
    ],
)
async def test_series_matching(
    archive: Archive, params: dict[str, str], expected: set[tuple[str, int]]
) -> None:
    assert await _series_keys(archive, "/series", params) == expected


async def test_series_of_one_study(archive: Archive) -> None:
    study = archive.corpus.studies["smith_john"]
    path = f"/studies/{study}/series"
    assert await _series_keys(archive, path, {}) == {("smith_john", 1), ("smith_john", 2)}
    assert await _series_keys(archive, path, {"SeriesNumber": "2"}) == {("smith_john", 2)}
    assert await _series_keys(archive, path, {"Modality": "MR"}) == set()


async def _instances(archive: Archive, path: str, params: Any) -> set[str]:
    response = await archive.get(path, params)
    assert response.status_code == 200, response.text
    return {r["00080018"]["Value"][0] for r in response.json()}


async def test_instance_matching_at_each_scope(archive: Archive) -> None:
    corpus = archive.corpus
    john, john_axial = corpus.studies["smith_john"], corpus.series[("smith_john", 1)]
    axial = corpus.instances[("smith_john", 1)]
    coronal = corpus.instances[("smith_john", 2)]
    path = f"/studies/{john}/series/{john_axial}/instances"
    assert await _instances(archive, path, {}) == set(axial)
    assert await _instances(archive, path, {"InstanceNumber": "2"}) == {axial[1]}
    assert await _instances(archive, f"/studies/{john}/instances", {}) == {*axial, *coronal}
    listed = {"SOPInstanceUID": f"{axial[0]},{coronal[0]}"}
    assert await _instances(archive, "/instances", listed) == {axial[0], coronal[0]}
    pet = set(corpus.instances[("muller", 2)])
    assert await _instances(archive, "/instances", {"Modality": "PT"}) == pet
    by_class = await _instances(archive, f"/studies/{john}/instances", {"SOPClassUID": CT_IMAGE})
    assert by_class == {*axial, *coronal}
    assert await _instances(archive, "/instances", {"PatientID": "P005"}) == set(
        corpus.instances[("smith_anna", 1)]
    )


async def test_no_match_is_an_empty_json_array(archive: Archive) -> None:
    for path in ("/studies", "/series", "/instances"):
        response = await archive.get(path, {"PatientID": "nobody"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/dicom+json"
        assert response.json() == []
