"""Retrieve frames (PS3.18 §10.4.1.1.4): ``…/instances/{uid}/frames/1,2,3``.

Frames are read by byte range from the fragment offsets recorded at ingest; only
rows without them (deflated data sets, unmappable fragments, single-bit frames)
cost a whole-object read, parsed in a worker thread. Frames are sent as stored
when the negotiated syntax is the stored one (or ``*``), else transcoded one by
one in the worker pool; each part names its transfer syntax.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from skypacs.dicom.frames import check_frame_numbers, extract_frames, parse_frame_list
from skypacs.dicom.transcode import LITTLE_ENDIAN_NATIVE, FrameFormat, transcode_frame
from skypacs.dicom.transfer_syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
)
from skypacs.dicomweb.accept import AS_STORED, Offer
from skypacs.dicomweb.media_types import MULTIPART_RELATED
from skypacs.errors import NotFound
from skypacs.http import get_runtime
from skypacs.index.retrieve import StoredInstance, find_instance
from skypacs.runtime import Runtime

from .negotiation import choose, frame_offers
from .payload import Payload, payload_response
from .state import WadoState, wado_state


def _frame_syntax(row: StoredInstance) -> str:
    """The syntax frames are in once cut out (inflated frames are plain native)."""
    stored = row.transfer_syntax_uid
    return EXPLICIT_VR_LITTLE_ENDIAN if stored == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN else stored


def _same_bytes(source: str, target: str) -> bool:
    return source == target or (source in LITTLE_ENDIAN_NATIVE and target in LITTLE_ENDIAN_NATIVE)


def _frame_count(row: StoredInstance) -> int:
    if row.frame_ranges is not None:
        return len(row.frame_ranges)
    return max(row.number_of_frames or 1, 1)


class FrameReader:
    """Makes the payload of frame ``n`` of one instance in the negotiated syntax."""

    def __init__(
        self, runtime: Runtime, state: WadoState, row: StoredInstance, target: str
    ) -> None:
        self._runtime = runtime
        self._state = state
        self._row = row
        self._source = _frame_syntax(row)
        self._target = target
        self._format = FrameFormat.from_json(row.pixel_attrs)

    async def payload(self, number: int) -> Payload:
        row = self._row
        if row.frame_ranges is None:
            data = await self._runtime.blobs.read(row.blob_key)
            source, frames = await self._state.run_blocking(extract_frames, data, [number])
            converted = await self._convert(frames[0], source)
            return Payload(size=len(converted), data=converted)
        spans = row.frame_ranges[number - 1]
        if _same_bytes(self._source, self._target):
            return Payload.of_spans(row.blob_key, spans)
        pieces = [
            await self._runtime.blobs.read(row.blob_key, offset, offset + length)
            for offset, length in spans
        ]
        converted = await self._convert(b"".join(pieces), self._source)
        return Payload(size=len(converted), data=converted)

    async def _convert(self, frame: bytes, source: str) -> bytes:
        if _same_bytes(source, self._target):
            return frame
        if self._format is None:
            raise NotFound("the instance has no Image Pixel attributes to decode its frames")
        return await self._state.run_blocking(
            transcode_frame, frame, source, self._target, self._format
        )


def _resolve(offer: Offer, source: str) -> str:
    syntax = offer.transfer_syntax or AS_STORED
    return source if syntax == AS_STORED else syntax


async def retrieve_frames(
    request: Request, study: str, series: str, instance: str, frames: str
) -> Response:
    """Frames of one instance, as multipart/related (or one frame as a single part)."""
    runtime = get_runtime(request)
    state = wado_state(request)
    numbers = parse_frame_list(frames, max_frames=runtime.settings.wado.max_frames_per_request)
    row = await find_instance(runtime.index.pool, study, series, instance)
    if row is None:
        raise NotFound("no such instance")
    if not row.has_pixels:
        raise NotFound("the instance has no pixel data")
    check_frame_numbers(numbers, _frame_count(row))
    source = _frame_syntax(row)
    offer = choose(request, frame_offers(source, single=len(numbers) == 1))
    target = _resolve(offer, source)
    reader = FrameReader(runtime, state, row, target)
    first = await reader.payload(numbers[0])
    state.access.record(runtime, [row.study_pk])
    multipart = offer.media_type.essence == MULTIPART_RELATED.essence
    media = offer.inner_type if multipart and offer.inner_type is not None else offer.media_type

    async def rest(index: int) -> Payload:
        return await reader.payload(numbers[index])

    return await payload_response(
        request,
        runtime.blobs,
        first=first,
        count=len(numbers),
        rest=rest,
        media=media,
        transfer_syntax=target,
        multipart=multipart,
    )
