"""Retrieve bulk data (PS3.18 §10.4.1.1.5) by the BulkDataURI metadata hands out.

``…/instances/{uid}/bulkdata/{TAG}`` or ``…/bulkdata/{SEQ}/{item}/{TAG}``. Values
whose offsets were recorded at ingest (top-level bulk values, native Pixel Data)
are read by byte range; encapsulated Pixel Data comes back as its frames, as
stored; anything else is found by parsing the object in a worker thread.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from skypacs.dicom.bulk_values import find_bulk_value
from skypacs.dicom.dicom_json import PIXEL_DATA_KEYS
from skypacs.dicom.transcode import is_native
from skypacs.dicomweb.media_types import APPLICATION_OCTET_STREAM, MULTIPART_RELATED
from skypacs.errors import NotFound
from skypacs.http import get_runtime
from skypacs.index.retrieve import StoredInstance, find_instance
from skypacs.runtime import Runtime

from .negotiation import bulk_offers, choose
from .payload import Payload, payload_response
from .state import WadoState, wado_state


def _ranged_payloads(row: StoredInstance, path: str) -> list[Payload] | None:
    """Payloads readable by byte range, or None when the object must be parsed."""
    if path in row.bulk_ranges:
        return [Payload.of_spans(row.blob_key, [row.bulk_ranges[path]])]
    if path not in PIXEL_DATA_KEYS or row.frame_ranges is None:
        return None
    if is_native(row.transfer_syntax_uid):
        spans = [span for frame in row.frame_ranges for span in frame]
        return [Payload.of_spans(row.blob_key, spans)]
    return [Payload.of_spans(row.blob_key, frame) for frame in row.frame_ranges]


async def _parsed_payload(
    runtime: Runtime, state: WadoState, row: StoredInstance, path: str
) -> Payload:
    data = await runtime.blobs.read(row.blob_key)
    value = await state.run_blocking(find_bulk_value, data, path)
    if value is None:
        raise NotFound(f"the instance has no bulk data at {path}")
    return Payload(size=len(value), data=value)


async def retrieve_bulkdata(
    request: Request, study: str, series: str, instance: str, tag_path: str
) -> Response:
    """One bulk data value (or the frames of encapsulated Pixel Data)."""
    runtime = get_runtime(request)
    state = wado_state(request)
    row = await find_instance(runtime.index.pool, study, series, instance)
    if row is None:
        raise NotFound("no such instance")
    path = tag_path.upper()
    payloads = _ranged_payloads(row, path)
    if payloads is None:
        payloads = [await _parsed_payload(runtime, state, row, path)]
    offer = choose(request, bulk_offers(single=len(payloads) == 1))
    state.access.record(runtime, [row.study_pk])
    parts = payloads

    async def rest(index: int) -> Payload:
        return parts[index]

    multipart = offer.media_type.essence == MULTIPART_RELATED.essence
    return await payload_response(
        request,
        runtime.blobs,
        first=payloads[0],
        count=len(payloads),
        rest=rest,
        media=APPLICATION_OCTET_STREAM,
        transfer_syntax=None,
        multipart=multipart,
    )
