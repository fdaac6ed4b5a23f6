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

import math
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
from skypacs.ingest.pipeline import ClaimSupply, Ingestor, Staged, StagingQueue, StoreOutcome
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


def _declared_length(request: Request, settings: Settings) -> int | None:
    """The body's Content-Length (None without one); an oversize body is refused
    before it is read."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit():
        raise BadRequest("Content-Length is not a number")
    if int(declared) > settings.stow.max_body_bytes:
        raise PayloadTooLarge(f"request body exceeds {settings.stow.max_body_bytes} bytes")
    return int(declared)


class _Body:
    """The request body, counted as it is read and refused with 413 beyond ``limit``."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int, declared: int | None) -> None:
        self._chunks = chunks
        self._limit = limit
        self._declared = declared
        self._seen = 0
        #: Where the body of the part being read starts (:attr:`Part.offset`).
        self.part_offset = 0

    async def stream(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self._seen += len(chunk)
            if self._seen > self._limit:
                raise PayloadTooLarge(f"request body exceeds {self._limit} bytes")
            yield chunk

    def instances_left(self, taken: int, size_hint: int | None = None) -> int:
        """Parts still to come, the one being read included, after ``taken`` of them.

        Foreseen from the bytes the Content-Length leaves from the current part's
        start and the mean size of the parts before it; for the first part, from
        the size its own header foretells (``size_hint``), rounded down since
        each part also carries a delimiter and headers. Without a length, as
        many again as were read (one to begin with).
        """
        if self.part_offset == 0:
            return 1
        if self._declared is None:
            return max(1, taken)
        left = self._declared - self.part_offset
        if taken == 0:
            return max(1, left // size_hint) if size_hint else 1
        return max(1, math.ceil(left / (self.part_offset / taken)))


async def _stage_dicom_parts(
    ingestor: Ingestor,
    parts: AsyncIterator[Part],
    study: str | None,
    claims: ClaimSupply,
    body: _Body,
) -> list[Staged | StoreOutcome]:
    """Stage every part; one finishes (fsync, rename) while the next is read."""
    queue = StagingQueue(ingestor, study, claims)
    try:
        async for part in parts:
            body.part_offset = part.offset
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
    ingestor: Ingestor,
    parts: AsyncIterator[Part],
    study: str | None,
    claims: ClaimSupply,
    body: _Body,
) -> list[StoreOutcome]:
    """Stage every part first: a request refused as a whole stores nothing."""
    try:
        staged = await _stage_dicom_parts(ingestor, parts, study, claims, body)
    finally:
        await claims.release()
    return await ingestor.commit_all(staged)


async def store_instances(request: Request, study: str | None = None) -> Response:
    """``POST /studies`` and ``POST /studies/{study}``."""
    runtime = get_runtime(request)
    settings = runtime.settings
    media = _request_media_type(request)
    declared = _declared_length(request, settings)
    body = _Body(request.stream(), settings.stow.max_body_bytes, declared)
    ingestor = Ingestor(runtime.index, runtime.blobs, settings)
    if media.same_essence(APPLICATION_DICOM):
        outcomes = [await ingestor.store(body.stream(), expected_study=study)]
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
    body: _Body,
    ingestor: Ingestor,
    study: str | None,
) -> list[StoreOutcome]:
    runtime = get_runtime(request)
    settings = runtime.settings
    inner = media.param("type")
    inner_type = parse_media_type(inner) if inner else APPLICATION_DICOM
    parts = iter_parts(
        body.stream(),
        boundary_from_content_type(request.headers["content-type"]),
        max_parts=settings.stow.max_parts,
        max_part_header_bytes=settings.stow.max_part_header_bytes,
        max_body_bytes=None,  # enforced on the raw body by _Body
    )
    if inner_type.same_essence(APPLICATION_DICOM):
        claims = ClaimSupply(
            runtime.index,
            max_block=min(settings.stow.claim_block_max, settings.stow.max_parts),
            instances_left=body.instances_left,
        )
        return await _store_dicom_parts(ingestor, parts, study, claims, body)
    if inner_type.same_essence(APPLICATION_DICOM_JSON):
        return await store_metadata_and_bulk(ingestor, parts, settings, study)
    raise UnsupportedMediaType(
        f'multipart/related; type="{inner_type.essence}" is not a STOW-RS request type'
    )
