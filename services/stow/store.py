"""The STOW-RS transaction (PS3.18 §10.5): parse the request, store each instance.

Accepted request forms (PS3.18 §10.5.1.2):
- ``multipart/related; type="application/dicom"``: one Part 10 instance per part;
- ``multipart/related; type="application/dicom+json"``: metadata with bulk data
  parts referenced by Content-Location (see :mod:`.bulk_form`);
- ``application/dicom``: a single Part 10 instance as the whole body.
Anything else is 415. Each instance streams straight to the blob store; the
response lists every instance as stored (ReferencedSOPSequence) or failed
(FailedSOPSequence with its FailureReason).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from starlette.responses import Response

from skypacs.config import Settings
from skypacs.dicomweb.media_types import (
    APPLICATION_DICOM,
    APPLICATION_DICOM_JSON,
    MULTIPART_RELATED,
    MediaType,
    parse_media_type,
)
from skypacs.dicomweb.multipart import Part, boundary_from_content_type, iter_parts
from skypacs.dicomweb.status import FailureReason
from skypacs.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from skypacs.http import get_runtime, public_root
from skypacs.ingest.pipeline import Ingestor, Staged, StagingQueue, StoreOutcome
from skypacs.security import note_instances

from .bulk_form import store_metadata_and_bulk
from .response import stow_response


def _request_media_type(request: Request) -> MediaType:
    raw = request.headers.get("content-type")
    if not raw:
        raise UnsupportedMediaType("Content-Type is required")
    try:
        return parse_media_type(raw)
    except BadRequest:
        raise UnsupportedMediaType("Content-Type cannot be parsed") from None


def _check_declared_length(request: Request, settings: Settings) -> None:
    """Refuse an oversize body from its Content-Length, before reading it."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise BadRequest("Content-Length is not a number")
    if int(declared) > settings.stow.max_body_bytes:
        raise PayloadTooLarge(f"request body exceeds {settings.stow.max_body_bytes} bytes")


async def _limited(body: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    seen = 0
    async for chunk in body:
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        yield chunk


async def _stage_dicom_parts(
    ingestor: Ingestor, parts: AsyncIterator[Part], study: str | None
) -> list[Staged | StoreOutcome]:
    """Stage every part; one finishes (fsync, rename) while the next is read."""
    queue = StagingQueue(ingestor, study)
    try:
        async for part in parts:
            declared = part.content_type
            if declared is not None and not declared.same_essence(APPLICATION_DICOM):
                await part.drain()
                queue.add_outcome(
                    StoreOutcome(
                        failure=FailureReason.CANNOT_UNDERSTAND,
                        detail=f"part of type {declared.essence} in an application/dicom request",
                    )
                )
                continue
            await queue.add(part.chunks())
        return await queue.results()
    except BaseException:
        await queue.abandon()
        raise


async def _store_dicom_parts(
    ingestor: Ingestor, parts: AsyncIterator[Part], study: str | None
) -> list[StoreOutcome]:
    """Stage every part first: a request refused as a whole stores nothing."""
    return await ingestor.commit_all(await _stage_dicom_parts(ingestor, parts, study))


async def store_instances(request: Request, study: str | None = None) -> Response:
    """``POST /studies`` and ``POST /studies/{study}``."""
    runtime = get_runtime(request)
    settings = runtime.settings
    media = _request_media_type(request)
    _check_declared_length(request, settings)
    body = _limited(request.stream(), settings.stow.max_body_bytes)
    ingestor = Ingestor(runtime.index, runtime.blobs, settings)
    if media.same_essence(APPLICATION_DICOM):
        outcomes = [await ingestor.store(body, expected_study=study)]
    elif media.same_essence(MULTIPART_RELATED):
        outcomes = await _store_multipart(request, media, body, ingestor, study)
    else:
        raise UnsupportedMediaType(
            "STOW-RS accepts multipart/related (application/dicom or application/dicom+json "
            "parts) or application/dicom"
        )
    if not outcomes:
        raise BadRequest("the request holds no instance")
    note_instances(
        request.state, ((o.study_uid, o.series_uid, o.sop_instance_uid, o.ok) for o in outcomes)
    )
    return stow_response(outcomes, public_root(request, settings), study)


async def _store_multipart(
    request: Request,
    media: MediaType,
    body: AsyncIterator[bytes],
    ingestor: Ingestor,
    study: str | None,
) -> list[StoreOutcome]:
    settings = get_runtime(request).settings
    inner = media.param("type")
    inner_type = parse_media_type(inner) if inner else APPLICATION_DICOM
    parts = iter_parts(
        body,
        boundary_from_content_type(request.headers["content-type"]),
        max_parts=settings.stow.max_parts,
        max_part_header_bytes=settings.stow.max_part_header_bytes,
        max_body_bytes=None,  # enforced on the raw body by _limited
    )
    if inner_type.same_essence(APPLICATION_DICOM):
        return await _store_dicom_parts(ingestor, parts, study)
    if inner_type.same_essence(APPLICATION_DICOM_JSON):
        return await store_metadata_and_bulk(ingestor, parts, settings, study)
    raise UnsupportedMediaType(
        f'multipart/related; type="{inner_type.essence}" is not a STOW-RS request type'
    )
