"""Retrieve instances (PS3.18 §10.4.1.1.1): a study, a series or one instance.

The answer is multipart/related of application/dicom (or, for one instance, a
single application/dicom body). Instances whose negotiated syntax is the stored
one are streamed from the blob store chunk by chunk, so a study of any size
never sits in memory; the others are read and converted one at a time in the
bounded worker pool. The first part is prepared before the response starts, so
its failures still get a proper status; stored instances are then opened a
group at a time (see :mod:`.read_ahead`), the next group while one is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from skypacs.dicom.transcode import transcode_instance
from skypacs.dicomweb.accept import AS_STORED
from skypacs.dicomweb.media_types import MULTIPART_RELATED
from skypacs.dicomweb.multipart import (
    OutPart,
    multipart_content_type,
    multipart_length,
    new_boundary,
    write_multipart,
)
from skypacs.errors import NotFound
from skypacs.http import get_runtime
from skypacs.index.retrieve import InstanceBlob, StoredInstance, Target, find_blobs
from skypacs.runtime import Runtime
from skypacs.sendfile import file_sender
from skypacs.storage import BlobReader, Chunk

from .negotiation import choose, instance_offers
from .read_ahead import GROUP_BYTES, Group, bodies_ahead, plan_groups
from .sendfile_response import SendfileResponse, multipart_batches, sendable, span_batches
from .state import WadoState, wado_state

DICOM = "application/dicom"
Body = AsyncIterable[Chunk] | bytes
#: An instance to send: a retrieve's light row, or a full row (WADO-URI).
Row = InstanceBlob | StoredInstance


class InstanceBodies:
    """Makes each instance's Part 10 bytes in the negotiated syntax."""

    def __init__(self, runtime: Runtime, state: WadoState, target: str) -> None:
        self._runtime = runtime
        self._state = state
        self._target = target

    def syntax_of(self, row: Row) -> str:
        return row.transfer_syntax_uid if self._target == AS_STORED else self._target

    async def body(self, row: Row) -> Body:
        if self.streams(row):
            return await self._runtime.blobs.open(row.blob_key)
        data = await self._runtime.blobs.read(row.blob_key)
        return await self._state.run_blocking(transcode_instance, data, self.syntax_of(row))

    async def group(self, rows: Sequence[Row]) -> Sequence[Body]:
        """Bodies of ``rows``: all streamed ones opened at once, or one converted row."""
        if len(rows) == 1:
            return [await self.body(rows[0])]
        return await self._runtime.blobs.open_many([row.blob_key for row in rows])

    def streams(self, row: Row) -> bool:
        """True when ``row`` is sent as stored: its body is a reader, not converted bytes."""
        return self.syntax_of(row) == row.transfer_syntax_uid

    def part(self, row: Row, body: Body) -> OutPart:
        return OutPart(f"{DICOM}; transfer-syntax={self.syntax_of(row)}", body)

    def plan(self, rows: Sequence[Row]) -> list[Group]:
        sizes = [row.size_bytes for row in rows]
        return plan_groups(sizes, [self.streams(row) for row in rows], GROUP_BYTES)


async def _parts(
    bodies: InstanceBodies, rows: Sequence[Row], groups: Sequence[Group], first: Sequence[Body]
) -> AsyncIterator[OutPart]:
    """One part per row; ``first`` holds the bodies of the first group, and the
    next group of stored instances is opened while one is sent."""

    async def opener(group: Group) -> Sequence[Body]:
        return await bodies.group(rows[group.start : group.stop])

    ahead = bodies_ahead(groups, first, opener)
    try:
        position = 0
        async for body in ahead:
            yield bodies.part(rows[position], body)
            position += 1
    finally:
        await ahead.aclose()


async def _retrieve(request: Request, target: Target) -> Response:
    runtime = get_runtime(request)
    state = wado_state(request)
    rows = await find_blobs(runtime.index.pool, target)
    if not rows:
        raise NotFound(f"no such {target.level}")
    syntaxes = {row.transfer_syntax_uid for row in rows}
    offer = choose(request, instance_offers(syntaxes, single=len(rows) == 1))
    bodies = InstanceBodies(runtime, state, offer.transfer_syntax or AS_STORED)
    groups = bodies.plan(rows)
    opened = await bodies.group(rows[groups[0].start : groups[0].stop])
    first = opened[0]
    state.access.record(runtime, {row.study_pk for row in rows})
    if offer.media_type.essence != MULTIPART_RELATED.essence:
        return body_response(
            request, first, f"{DICOM}; transfer-syntax={bodies.syntax_of(rows[0])}"
        )
    boundary = new_boundary()
    single_syntax = {bodies.syntax_of(row) for row in rows}
    label = next(iter(single_syntax)) if len(single_syntax) == 1 else None
    media = multipart_content_type(DICOM, boundary, label)
    length = _length(bodies, rows, boundary)
    sender = file_sender(request.scope) if sendable(first) else None
    if sender is not None and length is not None:
        batches = multipart_batches(_parts(bodies, rows, groups, opened), boundary)
        owned = [body for body in opened if isinstance(body, BlobReader)]
        return SendfileResponse(batches, sender, length=length, media_type=media, owned=owned)
    return StreamingResponse(
        write_multipart(_parts(bodies, rows, groups, opened), boundary),
        headers=None if length is None else {"Content-Length": str(length)},
        media_type=media,
    )


def _length(bodies: InstanceBodies, rows: Sequence[Row], boundary: str) -> int | None:
    """The body's length when every instance goes out as stored (sizes known up
    front); a body of known length is sent as is, without chunked framing."""
    if not all(bodies.streams(row) for row in rows):
        return None
    parts = [(bodies.part(row, b"").content_type, row.size_bytes) for row in rows]
    return multipart_length(parts, boundary)


def body_response(request: Request, body: Body, media_type: str) -> Response:
    """One instance alone, with its length: sent from its file when the server can."""
    if not isinstance(body, BlobReader):
        return Response(body, media_type=media_type)
    sender = file_sender(request.scope) if sendable(body) else None
    if sender is not None:
        batches = span_batches(body, [(body.start, body.length)])
        return SendfileResponse(
            batches, sender, length=body.length, media_type=media_type, owned=[body]
        )
    sized = {"Content-Length": str(body.length)}
    return StreamingResponse(_as_stream(body), headers=sized, media_type=media_type)


async def _as_stream(body: Body) -> AsyncIterator[Chunk]:
    if isinstance(body, bytes):
        yield body
        return
    async for chunk in body:
        yield chunk


async def retrieve_study(request: Request, study: str) -> Response:
    """Every instance of a study."""
    return await _retrieve(request, Target(study))


async def retrieve_series(request: Request, study: str, series: str) -> Response:
    """Every instance of a series."""
    return await _retrieve(request, Target(study, series))


async def retrieve_instance(request: Request, study: str, series: str, instance: str) -> Response:
    """One instance."""
    return await _retrieve(request, Target(study, series, instance))
