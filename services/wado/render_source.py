"""Rendered frames of one stored instance, and the document of an Encapsulated PDF.

The frame is read by byte range (the offsets recorded at ingest) and the data set
header by one ranged read of the bytes before Pixel Data, so rendering frame 7
of a 2 GB cine never reads the rest. The decoded size is checked against
``SKYPACS_WADO__RENDER_MAX_DECODED_BYTES`` from the index before any read;
objects without frame offsets are parsed whole (and then count whole).
Decoding, the pixel pipeline and encoding run in the WADO worker pool.
"""

from __future__ import annotations

from typing import Final

from pydicom.dataset import Dataset

from skypacs.dicom.render_document import encapsulated_document, strip_padding
from skypacs.dicom.render_guard import RenderError, check_decoded_size
from skypacs.dicom.render_params import RenderParams
from skypacs.dicom.rendering import parse_whole, read_header, render_frame
from skypacs.dicom.transcode import FrameFormat
from skypacs.errors import NotFound
from skypacs.index.retrieve import StoredInstance, find_instance
from skypacs.runtime import Runtime

from .frames import _frame_count, _frame_syntax
from .state import WadoState

ENCAPSULATED_PDF: Final = "1.2.840.10008.5.1.4.1.1.104.1"
ENCAPSULATED_DOCUMENT: Final = "00420011"


def frame_count(row: StoredInstance) -> int:
    """Frames of a stored instance (1 for single-frame images)."""
    return _frame_count(row)


def is_pdf(row: StoredInstance) -> bool:
    """Whether ``row`` is an Encapsulated PDF (PS3.3 A.45.1)."""
    return row.sop_class_uid == ENCAPSULATED_PDF


class InstanceRenderer:
    """Renders frames of one instance; the header is read once and kept."""

    def __init__(self, runtime: Runtime, state: WadoState, row: StoredInstance) -> None:
        fmt = FrameFormat.from_json(row.pixel_attrs)
        if fmt is None or not row.has_pixels:
            raise NotFound("the instance has no image pixel data to render")
        self._runtime = runtime
        self._state = state
        self._row = row
        self.format = fmt
        self.frames = frame_count(row)
        self._header: Dataset | None = None
        held = 1 if row.frame_ranges is not None else self.frames
        check_decoded_size(fmt, held, runtime.settings.wado.render_max_decoded_bytes)

    @classmethod
    async def open(
        cls, runtime: Runtime, state: WadoState, row: StoredInstance
    ) -> InstanceRenderer:
        """A renderer for ``row`` (re-read with its Image Pixel attributes)."""
        full = await find_instance(
            runtime.index.pool, row.study_uid, row.series_uid, row.sop_instance_uid
        )
        if full is None:
            raise NotFound("no such instance")
        return cls(runtime, state, full)

    async def _stored_frame(self, number: int) -> tuple[Dataset, str, bytes]:
        row = self._row
        blobs = self._runtime.blobs
        if row.frame_ranges is None:
            data = await blobs.read(row.blob_key)
            header, syntax, frames = await self._state.run_blocking(parse_whole, data, [number])
            return header, syntax, frames[0]
        if self._header is None:
            head_end = min((spans[0][0] for spans in row.frame_ranges if spans), default=0)
            if head_end <= 0:
                raise RenderError("the stored object has no readable header")
            head = await blobs.read(row.blob_key, 0, head_end)
            self._header = await self._state.run_blocking(read_header, head)
        spans = row.frame_ranges[number - 1]
        pieces = [await blobs.read(row.blob_key, offset, offset + size) for offset, size in spans]
        return self._header, _frame_syntax(row), b"".join(pieces)

    async def render(self, number: int, params: RenderParams, media: str) -> bytes:
        """Frame ``number`` (from 1) rendered as ``media``."""
        if not 1 <= number <= self.frames:
            raise NotFound(f"frame {number} does not exist: the instance has {self.frames}")
        header, syntax, frame = await self._stored_frame(number)
        return await self._state.run_blocking(
            render_frame, header, frame, syntax, self.format, number - 1, params, media
        )


async def pdf_document(runtime: Runtime, state: WadoState, row: StoredInstance) -> bytes:
    """The PDF bytes of an Encapsulated PDF instance (its even-length pad byte removed)."""
    span = row.bulk_ranges.get(ENCAPSULATED_DOCUMENT)
    if span is not None:
        offset, length = span
        document = await runtime.blobs.read(row.blob_key, offset, offset + length)
    else:
        data = await runtime.blobs.read(row.blob_key)
        document = await state.run_blocking(encapsulated_document, data)
    return strip_padding(document)
