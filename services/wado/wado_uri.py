"""WADO-URI (PS3.18 §9): ``GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…``.

``contentType`` picks the answer: ``application/dicom`` (the object, by default in
Explicit VR Little Endian, or in ``transferSyntax``), ``image/jpeg``,
``image/png`` or ``image/gif`` (one frame rendered: ``frameNumber``, ``rows``,
``columns``, ``region``, ``windowCenter``/``windowWidth``, ``imageQuality``), or
``application/pdf`` for an Encapsulated PDF. Without it a single-frame image is
rendered as JPEG and anything else is sent as DICOM. ``anonymize`` and
presentation states are refused with 400, as are missing, repeated or
malformed parameters and rendering parameters on a DICOM request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from fastapi import Request
from starlette.datastructures import QueryParams
from starlette.responses import Response

from skypacs.dicom.frames import check_frame_numbers
from skypacs.dicom.render_params import (
    MAX_VIEWPORT_EDGE,
    RenderParams,
    Viewport,
    Window,
    make_window,
    parse_integer,
    parse_number,
    parse_quality,
)
from skypacs.dicom.rendering import IMAGE_MEDIA
from skypacs.dicom.transcode import instance_targets
from skypacs.dicom.transfer_syntaxes import EXPLICIT_VR_LITTLE_ENDIAN
from skypacs.dicom.uids import validate_uid
from skypacs.dicomweb.media_types import parse_media_type
from skypacs.errors import BadRequest, NotAcceptable, NotFound
from skypacs.http import get_runtime
from skypacs.index.retrieve import StoredInstance, find_instance

from .instances import InstanceBodies, body_response
from .render_media import CROSS_ORIGIN, image_response
from .render_source import InstanceRenderer, frame_count, is_pdf, pdf_document
from .state import wado_state

DICOM: Final = "application/dicom"
PDF: Final = "application/pdf"
SUPPORTED: Final = (DICOM, PDF, *IMAGE_MEDIA)
#: Parameters that only make sense for a rendered image (PS3.18 §9.1.2).
IMAGE_ONLY: Final = (
    "rows", "columns", "region", "windowCenter", "windowWidth", "frameNumber", "imageQuality",
)  # fmt: skip
REFUSED: Final = {
    "anonymize": "anonymize is not supported by this archive",
    "presentationUID": "presentation states are not applied by this archive",
    "presentationSeriesUID": "presentation states are not applied by this archive",
}


def single(query: QueryParams, name: str) -> str | None:
    """The one value of ``name``; BadRequest when repeated."""
    values = query.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"{name} may be given only once")
    return values[0] if values else None


def required_uid(query: QueryParams, name: str) -> str:
    value = single(query, name)
    if value is None:
        raise BadRequest(f"{name} is required")
    return validate_uid(value, field=name)


def content_types(text: str | None) -> list[str] | None:
    """Requested media types in order, or None when absent; 406 when none is served."""
    if text is None:
        return None
    try:
        wanted = [parse_media_type(piece).essence for piece in text.split(",") if piece.strip()]
    except Exception:
        raise BadRequest("contentType must be a list of media types") from None
    served = [media for media in wanted if media in SUPPORTED]
    if not served:
        raise NotAcceptable(f"contentType must include one of {', '.join(SUPPORTED)}")
    return served


@dataclass(frozen=True, slots=True)
class WadoUriRequest:
    """A parsed, validated WADO-URI request."""

    study_uid: str
    series_uid: str
    object_uid: str
    content_types: list[str] | None
    transfer_syntax: str | None
    image: Mapping[str, str]


def parse_request(query: QueryParams) -> WadoUriRequest:
    """Validate the query of a WADO-URI request (BadRequest on any fault)."""
    if single(query, "requestType") != "WADO":
        raise BadRequest("requestType must be WADO")
    for name, reason in REFUSED.items():
        if name in query:
            raise BadRequest(reason)
    syntax = single(query, "transferSyntax")
    image = {name: value for name in IMAGE_ONLY if (value := single(query, name)) is not None}
    return WadoUriRequest(
        study_uid=required_uid(query, "studyUID"),
        series_uid=required_uid(query, "seriesUID"),
        object_uid=required_uid(query, "objectUID"),
        content_types=content_types(single(query, "contentType")),
        transfer_syntax=None if syntax is None else validate_uid(syntax, field="transferSyntax"),
        image=image,
    )


def pick_media(wanted: list[str] | None, row: StoredInstance) -> str:
    """The media type to answer with for ``row``."""
    if wanted is None:
        single_image = row.has_pixels and frame_count(row) == 1
        return "image/jpeg" if single_image else DICOM
    for media in wanted:
        if media == PDF and not is_pdf(row):
            continue
        if media in IMAGE_MEDIA and not row.has_pixels:
            continue
        return media
    raise NotAcceptable("the object cannot be sent in any of the requested content types")


def _window(image: Mapping[str, str]) -> Window | None:
    center, width = image.get("windowCenter"), image.get("windowWidth")
    if center is None and width is None:
        return None
    if center is None or width is None:
        raise BadRequest("windowCenter and windowWidth must be given together")
    return make_window(parse_number(center, "windowCenter"), parse_number(width, "windowWidth"))


def _region(text: str, rows: int, columns: int) -> tuple[int, int, int, int]:
    """``x1,y1,x2,y2`` as fractions of the image (PS3.18 §9.1.2.2) to a pixel region."""
    pieces = [parse_number(piece, "region") for piece in text.split(",")]
    if len(pieces) != 4 or not all(0.0 <= v <= 1.0 for v in pieces):
        raise BadRequest("region must be four numbers from 0 to 1: x1,y1,x2,y2")
    x1, y1, x2, y2 = pieces
    if x2 <= x1 or y2 <= y1:
        raise BadRequest("region must have x2 > x1 and y2 > y1")
    sx, sy = int(x1 * columns), int(y1 * rows)
    return sx, sy, max(1, round(x2 * columns) - sx), max(1, round(y2 * rows) - sy)


def _viewport(image: Mapping[str, str], rows: int, columns: int) -> Viewport | None:
    height = image.get("rows")
    width = image.get("columns")
    region = _region(image["region"], rows, columns) if "region" in image else None
    if height is None and width is None and region is None:
        return None
    edge = MAX_VIEWPORT_EDGE
    fallback_w, fallback_h = (
        (region[2], region[3]) if region and not (height or width) else (edge, edge)
    )
    vw = parse_integer(width, "columns", low=1, high=edge) if width else fallback_w
    vh = parse_integer(height, "rows", low=1, high=edge) if height else fallback_h
    return Viewport(vw, vh, region)


async def _render(
    request: Request, row: StoredInstance, parsed: WadoUriRequest, media: str
) -> Response:
    if parsed.transfer_syntax is not None:
        raise BadRequest("transferSyntax applies only to contentType application/dicom")
    renderer = await InstanceRenderer.open(get_runtime(request), wado_state(request), row)
    number = parse_integer(parsed.image.get("frameNumber", "1"), "frameNumber", low=1, high=1 << 30)
    check_frame_numbers([number], renderer.frames)
    fmt = renderer.format
    params = RenderParams(
        window=_window(parsed.image),
        viewport=_viewport(parsed.image, fmt.rows, fmt.columns),
        quality=parse_quality(parsed.image.get("imageQuality")),
    )
    return image_response(await renderer.render(number, params, media), media)


async def _dicom(request: Request, row: StoredInstance, syntax: str | None) -> Response:
    targets = instance_targets(row.transfer_syntax_uid)
    if syntax is None:
        syntax = EXPLICIT_VR_LITTLE_ENDIAN if EXPLICIT_VR_LITTLE_ENDIAN in targets else targets[0]
    if syntax not in targets:
        raise NotAcceptable(f"the object cannot be sent in transfer syntax {syntax}")
    runtime = get_runtime(request)
    body = await InstanceBodies(runtime, wado_state(request), syntax).body(row)
    return body_response(request, body, DICOM)


async def retrieve_wado_uri(request: Request) -> Response:
    """One object per the WADO-URI query."""
    parsed = parse_request(request.query_params)
    runtime = get_runtime(request)
    row = await find_instance(
        runtime.index.pool, parsed.study_uid, parsed.series_uid, parsed.object_uid
    )
    if row is None:
        raise NotFound("no such object")
    media = pick_media(parsed.content_types, row)
    wado_state(request).access.record(runtime, [row.study_pk])
    if media == DICOM:
        if parsed.image:
            raise BadRequest(f"{', '.join(parsed.image)} do not apply to application/dicom")
        return await _dicom(request, row, parsed.transfer_syntax)
    if media == PDF:
        document = await pdf_document(runtime, wado_state(request), row)
        return Response(document, media_type=PDF, headers=CROSS_ORIGIN)
    return await _render(request, row, parsed, media)
