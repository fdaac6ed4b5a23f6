"""The QIDO-RS test corpus, stored through the real STOW-RS pipeline, and its own checks.

Six synthetic studies (non-ASCII names, several modalities, dates across years,
multi-series studies, a RequestAttributesSequence) plus three of pydicom's
character set files stored byte for byte, so the archive must decode ISO 2022
and single-byte character sets at ingest for the names to be searchable.
Other QIDO test modules import :func:`open_archive` and :data:`STUDIES` from here.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydantic import SecretStr
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from skypacs.config import IndexSettings, Settings
from skypacs.runtime import Runtime, open_runtime
from skypacs.services.serve import create_app
from tests.integration.qido_helpers import scratch_database

pytestmark = pytest.mark.integration

BASE_URL = "http://testserver"
ROOT = "/dicom-web"
BOUNDARY = "qido-corpus-boundary"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SR_BASIC = "1.2.840.10008.5.1.4.1.1.88.11"
PT_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
CHARSET_FILES = {"japanese": "chrH31.dcm", "german": "chrGerm.dcm", "russian": "chrRuss.dcm"}


@dataclass(frozen=True)
class SeriesSpec:
    modality: str
    number: int
    instances: int
    sop_class: str
    description: str
    request_attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StudySpec:
    label: str
    patient_name: str
    patient_id: str
    date: str
    time: str
    accession: str
    description: str
    series: tuple[SeriesSpec, ...]
    referring: str = ""
    protocol: str = ""


STUDIES = (
    StudySpec(
        "smith_john", "Smith^John", "P001", "20190315", "101500", "ACC001", "CT Chest",
        (
            SeriesSpec("CT", 1, 2, CT_IMAGE, "Axial", (("SPS1", "RP1"),)),
            SeriesSpec("CT", 2, 1, CT_IMAGE, "Coronal"),
        ),
        protocol="CHEST_LOW_DOSE",
    ),
    StudySpec(
        "smythe_jane", "Smythe^Jane", "P002", "20200110", "083000", "ACC002", "MR Brain",
        (SeriesSpec("MR", 1, 1, MR_IMAGE, "T1"), SeriesSpec("SR", 99, 1, SR_BASIC, "Report")),
        protocol="BRAIN_ROUTINE",
    ),
    StudySpec(
        "muller", "Müller^Jürgen", "P003", "20201231", "235900", "ACC003", "PET CT",
        (SeriesSpec("CT", 1, 1, CT_IMAGE, "CT AC"), SeriesSpec("PT", 2, 2, PT_IMAGE, "PET")),
        referring="Doe^Alice",
    ),
    StudySpec(
        "smith_anna", "Smith^Anna", "P005", "20210601", "120000", "XYZ-9", "MR Knee",
        (SeriesSpec("MR", 1, 1, MR_IMAGE, "PD", (("SPS2", "RP2"),)),),
    ),
    StudySpec(
        "angstrom", "Ångström^Éric", "P006", "20180101", "090000", "ACC006", "US Abdomen",
        (SeriesSpec("US", 1, 1, US_IMAGE, "Liver"),),
    ),
    StudySpec(
        "smith_long", "Smith^Jo^Middle^Dr", "Q007", "20221015", "140000", "ACC007", "CT Head",
        (SeriesSpec("CT", 3, 1, CT_IMAGE, "Head"),),
    ),
)  # fmt: skip
SYNTHETIC = frozenset(s.label for s in STUDIES)
CHARSET = frozenset(CHARSET_FILES)
EVERY = SYNTHETIC | CHARSET


@dataclass
class Corpus:
    """What was stored: study, series and instance UIDs by label."""

    studies: dict[str, str] = field(default_factory=dict)
    series: dict[tuple[str, int], str] = field(default_factory=dict)
    instances: dict[tuple[str, int], list[str]] = field(default_factory=dict)

    def label_of(self, study_uid: str) -> str:
        return {uid: label for label, uid in self.studies.items()}[study_uid]


def _template() -> Dataset:
    path = get_testdata_file("CT_small.dcm")
    assert isinstance(path, str)
    return pydicom.dcmread(path)


def _request_attributes(pairs: Iterable[tuple[str, str]]) -> Sequence:
    items = []
    for step, procedure in pairs:
        item = Dataset()
        item.ScheduledProcedureStepID = step
        item.RequestedProcedureID = procedure
        items.append(item)
    return Sequence(items)


def _instance(template: Dataset, study: StudySpec, series: SeriesSpec, uids: tuple[str, str],
              number: int) -> tuple[str, bytes]:  # fmt: skip
    ds = copy.deepcopy(template)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids
    ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = series.sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPClassUID = UID(series.sop_class)
    ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
    ds.StudyDate, ds.StudyTime = study.date, study.time
    ds.SeriesDate, ds.SeriesTime = study.date, study.time
    ds.AccessionNumber, ds.StudyDescription = study.accession, study.description
    ds.ReferringPhysicianName = study.referring
    ds.StudyID = study.label[:16]
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = series.modality, series.number, number
    ds.SeriesDescription = series.description
    if study.protocol:
        ds.ProtocolName = study.protocol
    if series.request_attributes:
        ds.RequestAttributesSequence = _request_attributes(series.request_attributes)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return str(ds.SOPInstanceUID), buffer.getvalue()


def synthetic_instances(corpus: Corpus, studies: Iterable[StudySpec] = STUDIES) -> list[bytes]:
    """Part 10 files of ``studies``; their UIDs are recorded in ``corpus``."""
    template = _template()
    files = []
    for study in studies:
        study_uid = corpus.studies.setdefault(study.label, generate_uid())
        for series in study.series:
            series_uid = corpus.series.setdefault((study.label, series.number), generate_uid())
            for number in range(1, series.instances + 1):
                uid, data = _instance(template, study, series, (study_uid, series_uid), number)
                corpus.instances.setdefault((study.label, series.number), []).append(uid)
                files.append(data)
    return files


def charset_instances(corpus: Corpus) -> list[bytes]:
    files = []
    for label, name in CHARSET_FILES.items():
        (path,) = get_charset_files(name)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        corpus.studies[label] = str(ds.StudyInstanceUID)
        files.append(Path(path).read_bytes())
    return files


def multipart(files: Iterable[bytes]) -> bytes:
    out = bytearray()
    for data in files:
        out += f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
    return bytes(out + f"--{BOUNDARY}--\r\n".encode())


@dataclass
class Archive:
    client: httpx.AsyncClient
    runtime: Runtime
    corpus: Corpus

    async def store(self, files: list[bytes]) -> None:
        content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
        response = await self.client.post(
            f"{ROOT}/studies", content=multipart(files), headers={"Content-Type": content_type}
        )
        assert response.status_code == 200, response.text

    async def get(self, path: str, params: Any = None, **headers: str) -> httpx.Response:
        return await self.client.get(ROOT + path, params=params, headers=headers)

    async def studies(self, params: Any) -> set[str]:
        """Labels of the studies ``GET /studies`` answers with."""
        response = await self.get("/studies", params)
        assert response.status_code == 200, response.text
        return {self.corpus.label_of(r["0020000D"]["Value"][0]) for r in response.json()}


@asynccontextmanager
async def open_archive(settings: Settings, corpus: Corpus | None = None) -> AsyncIterator[Archive]:
    """``skypacs serve``'s app on real backends, the runtime put on it by hand."""
    async with open_runtime(settings, migrate=False, relay=False) as runtime:
        app = create_app(settings)
        app.state.runtime = runtime
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=60) as client:
            yield Archive(client, runtime, corpus or Corpus())


def settings_for(dsn: str, data_dir: Path, **qido: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        index=IndexSettings(dsn=SecretStr(dsn)),
        storage={"backend": "filesystem", "filesystem": {"fsync": False}},
        qido=qido,
    )


@asynccontextmanager
async def loaded_archive(
    server_dsn: str, template: str, data_dir: Path, **qido: Any
) -> AsyncIterator[Archive]:
    """A fresh database holding the whole corpus, stored through STOW-RS."""
    async with scratch_database(server_dsn, template) as dsn:
        corpus = Corpus()
        async with open_archive(settings_for(dsn, data_dir, **qido), corpus) as archive:
            await archive.store(synthetic_instances(corpus))
            await archive.store(charset_instances(corpus))
            yield archive


@pytest.fixture(scope="module")
async def archive(
    pg_server_dsn: str, pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Archive]:
    data_dir = tmp_path_factory.mktemp("qido-corpus")
    async with loaded_archive(pg_server_dsn, pg_template, data_dir) as loaded:
        yield loaded


# --- character sets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Yamada^Tarou", {"japanese"}),
        ("山田^太郎", {"japanese"}),
        ("やまだ^たろう", {"japanese"}),
        ("山田*", {"japanese"}),
        ("Äneas^Rüdiger", {"german"}),
        ("Люк*", {"russian"}),
        ("Müller^Jürgen", {"muller"}),
        ("Ångström*", {"angstrom"}),
    ],
)
async def test_names_in_any_character_set_are_searchable_as_unicode(
    archive: Archive, name: str, expected: set[str]
) -> None:
    assert await archive.studies({"PatientName": name}) == expected


async def test_percent_encoded_utf8_values(archive: Archive) -> None:
    response = await archive.client.get(f"{ROOT}/studies?PatientName=%E5%B1%B1%E7%94%B0%2A")
    assert response.status_code == 200
    assert [archive.corpus.label_of(r["0020000D"]["Value"][0]) for r in response.json()] == [
        "japanese"
    ]


async def test_returned_names_keep_every_component_group(archive: Archive) -> None:
    response = await archive.get("/studies", {"PatientID": "H31EXAMPLE"})
    (result,) = response.json()
    assert result["00100010"] == {
        "vr": "PN",
        "Value": [
            {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
        ],
    }
