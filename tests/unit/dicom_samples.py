"""Builders of small Part 10 files shared by the dicom unit tests (no tests here)."""

from __future__ import annotations

from io import BytesIO

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from skypacs.dicom.part10_scanner import Part10Scanner, ScanResult


def image_dataset(transfer_syntax: str = ExplicitVRLittleEndian, **attrs: object) -> Dataset:
    """A minimal Secondary Capture instance with fresh UIDs."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "P1"
    ds.PatientName = "Doe^Jane"
    ds.Modality = "OT"
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def part10_bytes(ds: Dataset, *, implicit: bool | None = None) -> bytes:
    """Encode ``ds`` as a Part 10 file with a non-zero preamble."""
    ds.preamble = b"\xab" * 128
    out = BytesIO()
    if implicit is None:
        dcmwrite(out, ds, enforce_file_format=True)
    else:
        dcmwrite(out, ds, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return out.getvalue()


def scan(data: bytes, chunk_size: int | None = None, **options: int) -> tuple[bytes, ScanResult]:
    """Scan ``data`` in chunks of ``chunk_size``; return stored bytes and result."""
    scanner = Part10Scanner(**options)
    size = chunk_size or max(len(data), 1)
    stored = b"".join(scanner.feed(data[i : i + size]) for i in range(0, len(data), size))
    return stored, scanner.finish()


def read_ranges(data: bytes, ranges: list[tuple[int, int]]) -> bytes:
    """Concatenate the byte ranges of ``data``."""
    return b"".join(data[offset : offset + length] for offset, length in ranges)
