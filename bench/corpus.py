"""A deterministic synthetic CT corpus written as DICOM Part 10 files.

Every UID, name, date and pixel comes from the spec and its seed, so the same
spec always yields byte-identical files (PS3.10 §7: explicit VR little endian
with a File Meta Information group).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

IMPLEMENTATION_UID = "1.2.826.0.1.3680043.10.1337.1"
FIRST_STUDY_DATE = dt.date(2020, 1, 1)
STUDY_DATE_STEP_DAYS = 45
MANIFEST = "manifest.json"
UID_NAMESPACE = uuid.UUID("5f0e3c52-8d4b-4c1e-9a57-2b8f6d3e4a10")


@dataclass(frozen=True)
class CorpusSpec:
    """How many studies, series per study and instances per series, and their size."""

    studies: int = 8
    series: int = 2
    instances: int = 40
    rows: int = 512
    columns: int = 512
    seed: int = 20240601

    @property
    def instance_count(self) -> int:
        return self.studies * self.series * self.instances

    @property
    def key(self) -> str:
        """A short name that changes whenever any field changes."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class InstanceEntry:
    sop_uid: str
    path: Path
    size: int


@dataclass(frozen=True)
class SeriesEntry:
    series_uid: str
    instances: tuple[InstanceEntry, ...]

    @property
    def size(self) -> int:
        return sum(item.size for item in self.instances)


@dataclass(frozen=True)
class StudyEntry:
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    series: tuple[SeriesEntry, ...]


@dataclass(frozen=True)
class Corpus:
    spec: CorpusSpec
    root: Path
    studies: tuple[StudyEntry, ...]

    def instances(self) -> Iterator[InstanceEntry]:
        for study in self.studies:
            for series in study.series:
                yield from series.instances

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.instances())

    @property
    def sample_study(self) -> StudyEntry:
        """The study the single-target phases use (the middle one)."""
        return self.studies[len(self.studies) // 2]

    def studies_matching_name(self, pattern: str) -> int:
        """How many studies a QIDO PatientName wildcard should return (PS3.4 §C.2.2.2.4)."""
        return sum(fnmatch.fnmatchcase(s.patient_name, pattern) for s in self.studies)

    def studies_in_date_range(self, first: str, last: str) -> int:
        return sum(first <= s.study_date <= last for s in self.studies)


def uid(spec: CorpusSpec, *parts: object) -> str:
    """A ``2.25.`` UID (PS3.5 §B.2) from a name-based UUID of the seed and position."""
    name = "/".join([str(spec.seed), *(str(part) for part in parts)])
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}"


def patient_name(index: int) -> str:
    return f"BENCH{index:04d}^CT"


def patient_id(spec: CorpusSpec, index: int) -> str:
    return f"BENCH-{spec.seed}-{index:04d}"


def study_date(index: int) -> str:
    day = FIRST_STUDY_DATE + dt.timedelta(days=index * STUDY_DATE_STEP_DAYS)
    return day.strftime("%Y%m%d")


def pixels(spec: CorpusSpec, flat_index: int) -> bytes:
    """12-bit noise in 16-bit words: incompressible, like the worst case of a real CT."""
    generator = np.random.Generator(np.random.PCG64([spec.seed, flat_index]))
    frame = generator.integers(0, 4096, size=(spec.rows, spec.columns), dtype=np.uint16)
    return frame.astype("<u2").tobytes()


def study_layout(spec: CorpusSpec, index: int) -> StudyEntry:
    """UIDs and patient data of one study, without touching the disk."""
    series = tuple(
        SeriesEntry(
            uid(spec, "series", index, number),
            tuple(
                InstanceEntry(uid(spec, "sop", index, number, item), Path(), 0)
                for item in range(spec.instances)
            ),
        )
        for number in range(spec.series)
    )
    return StudyEntry(
        uid(spec, "study", index),
        patient_id(spec, index),
        patient_name(index),
        study_date(index),
        series,
    )


def _patient_and_study(ds: Dataset, spec: CorpusSpec, study: StudyEntry, index: int) -> None:
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = "080000"
    ds.StudyID = f"{index + 1}"
    ds.AccessionNumber = f"ACC{spec.seed % 10000:04d}{index:04d}"
    ds.StudyDescription = "BENCH CT CHEST"
    ds.ReferringPhysicianName = "REFERRER^BENCH"


def _image_pixel(ds: Dataset, spec: CorpusSpec, flat_index: int, position: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-180.0, -180.0, float(-position)]
    ds.PixelData = pixels(spec, flat_index)


def build_instance(
    spec: CorpusSpec, study: StudyEntry, index: int, series_number: int, item: int
) -> Dataset:
    """One CT Image Storage instance (PS3.3 §A.3) of the corpus."""
    series = study.series[series_number]
    sop_uid = UID(series.instances[item].sop_uid)
    flat_index = (index * spec.series + series_number) * spec.instances + item
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "CT"
    ds.Manufacturer = "SKYPACS-BENCH"
    _patient_and_study(ds, spec, study, index)
    ds.SeriesInstanceUID = series.series_uid
    ds.SeriesNumber = series_number + 1
    ds.SeriesDescription = f"AXIAL {series_number + 1}"
    ds.SeriesDate = study.study_date
    ds.InstanceNumber = item + 1
    ds.FrameOfReferenceUID = uid(spec, "frame-of-reference", index)
    _image_pixel(ds, spec, flat_index, item)
    return ds


def write_study(spec: CorpusSpec, root: Path, index: int) -> StudyEntry:
    """Write every instance of study ``index`` under ``root``; return its entry with sizes."""
    layout = study_layout(spec, index)
    written: list[SeriesEntry] = []
    for number, series in enumerate(layout.series):
        entries = []
        for item, instance in enumerate(series.instances):
            path = root / f"s{index:04d}" / f"r{number:02d}" / f"i{item:05d}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            build_instance(spec, layout, index, number, item).save_as(
                path, enforce_file_format=True
            )
            entries.append(InstanceEntry(instance.sop_uid, path, path.stat().st_size))
        written.append(SeriesEntry(series.series_uid, tuple(entries)))
    return StudyEntry(
        layout.study_uid,
        layout.patient_id,
        layout.patient_name,
        layout.study_date,
        tuple(written),
    )


def _entries_exist(studies: tuple[StudyEntry, ...]) -> bool:
    return all(
        item.path.is_file() and item.path.stat().st_size == item.size
        for study in studies
        for series in study.series
        for item in series.instances
    )


def _manifest_json(corpus: Corpus) -> dict[str, object]:
    studies = []
    for study in corpus.studies:
        data = asdict(study)
        for series in data["series"]:
            for item in series["instances"]:
                item["path"] = str(Path(item["path"]).relative_to(corpus.root))
        studies.append(data)
    return {"spec": asdict(corpus.spec), "studies": studies}


def _study_from_json(root: Path, data: dict[str, object]) -> StudyEntry:
    series_list = data["series"]
    assert isinstance(series_list, list)
    series = tuple(
        SeriesEntry(
            s["series_uid"],
            tuple(
                InstanceEntry(i["sop_uid"], root / i["path"], int(i["size"]))
                for i in s["instances"]
            ),
        )
        for s in series_list
    )
    return StudyEntry(
        str(data["study_uid"]),
        str(data["patient_id"]),
        str(data["patient_name"]),
        str(data["study_date"]),
        series,
    )


def load_cached(spec: CorpusSpec, root: Path) -> Corpus | None:
    """The corpus already written under ``root`` for this exact spec, if intact."""
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if data.get("spec") != asdict(spec):
        return None
    studies = tuple(_study_from_json(root, study) for study in data["studies"])
    return Corpus(spec, root, studies) if _entries_exist(studies) else None


def generate(spec: CorpusSpec, root: Path) -> Corpus:
    """Write the corpus under ``root`` (reusing an intact earlier copy) and describe it."""
    cached = load_cached(spec, root)
    if cached is not None:
        return cached
    root.mkdir(parents=True, exist_ok=True)
    studies = tuple(write_study(spec, root, index) for index in range(spec.studies))
    corpus = Corpus(spec, root, studies)
    (root / MANIFEST).write_text(json.dumps(_manifest_json(corpus), indent=1))
    return corpus
