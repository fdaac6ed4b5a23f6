"""STOW of one large multi-frame instance: throughput, and the peak memory it costs.

The instance (1 GiB of 16-bit frames by default) is written once next to the
corpus and streamed from disk in one multipart POST, so neither the file nor
the body is ever held in memory by the load generator. The runner samples the
server's memory during the phase: a streaming server stays far below the size
of the instance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from .corpus import IMPLEMENTATION_UID
from .figures import Figure, Metric
from .load import LoadContext, Phase, status_note
from .stats import megabytes, rate

BOUNDARY = "skypacs-bench-large-5e1f"
ROWS = COLUMNS = 512
FRAME_BYTES = ROWS * COLUMNS * 2
FRAMES = 2048  # 1 GiB of pixel data
READ_BYTES = 1024 * 1024
ENHANCED_CT = UID("1.2.840.10008.5.1.4.1.1.2.1")
FILE_NAME = f"large-{FRAMES}x{ROWS}x{COLUMNS}.dcm"

SECONDS = Metric("STOW one 1 GiB multi-frame instance", "seconds", "s", higher_is_better=False)
LARGE_MB_S = Metric("STOW one 1 GiB multi-frame instance", "MB/s", "MB/s", higher_is_better=True)


def _header(frames: int) -> bytes:
    """Preamble, file meta and data set up to (not including) Pixel Data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ENHANCED_CT
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "BENCH-LARGE"
    ds.PatientName = "BENCH^LARGE"
    ds.Modality = "CT"
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    # Pixel Data (7FE0,0010) OW, explicit length (PS3.5 §7.1.2).
    pixel_header = b"\xe0\x7f\x10\x00OW\x00\x00" + (frames * FRAME_BYTES).to_bytes(4, "little")
    return out.getvalue() + pixel_header


def write_large_instance(directory: Path, frames: int = FRAMES) -> Path:
    """The instance file, written once (frame by frame) and then reused."""
    path = directory / FILE_NAME
    if path.is_file():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as handle:
        handle.write(_header(frames))
        for index in range(frames):
            handle.write(bytes([index % 251]) * FRAME_BYTES)
    partial.replace(path)
    return path


async def _body(path: Path) -> AsyncIterator[bytes]:
    yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, READ_BYTES):
            yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def run_large(ctx: LoadContext) -> list[Figure]:
    """One POST of the large instance; a 200 is the only success."""
    path = await asyncio.to_thread(write_large_instance, ctx.corpus.root)
    size = path.stat().st_size
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
        "Accept": "application/dicom+json",
    }
    start = time.perf_counter()
    response = await ctx.client.post(
        f"{ctx.dicomweb}/studies", content=_body(path), headers=headers, timeout=None
    )
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        return LARGE.unavailable(status_note(response.status_code))
    detail = {"bytes": size}
    return [
        Figure(SECONDS, elapsed, detail=detail),
        Figure(LARGE_MB_S, rate(megabytes(size), elapsed), detail=detail),
    ]


LARGE = Phase(SECONDS.phase, (SECONDS, LARGE_MB_S), run_large)
