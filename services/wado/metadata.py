"""Retrieve metadata (PS3.18 §10.4.1.1.2) of a study, series or instance.

Served from the index alone: the DICOM JSON kept at ingest, fetched for a whole
series in one query and joined as text. Relative BulkDataURIs (``bulk/...``) are
made absolute from the public base URL the client used. An ETag over the
instance versions and that base lets clients revalidate (304); JSON is gzipped
when the client accepts it and the body is worth it. Multipart
``application/dicom+xml`` carries one Native DICOM Model document per instance.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import AsyncIterator, Sequence

import orjson
from fastapi import Request
from starlette.responses import Response, StreamingResponse

from skypacs.dicomweb.media_types import APPLICATION_DICOM_XML, MULTIPART_RELATED
from skypacs.dicomweb.multipart import (
    OutPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from skypacs.dicomweb.native_xml import dataset_to_xml
from skypacs.dicomweb.urls import instance_url
from skypacs.errors import NotFound
from skypacs.http import get_runtime, public_root
from skypacs.index.retrieve import MetadataItem, Target, find_metadata, version_list

from .negotiation import METADATA_OFFERS, choose
from .state import WadoState, wado_state

_RELATIVE = '"BulkDataURI": "bulk/'
GZIP_LEVEL = 5


def metadata_etag(versions: Sequence[int], root: str, media: str) -> str:
    """A strong ETag: changes with any stored version, the public base or the format."""
    digest = hashlib.sha256()
    digest.update(",".join(str(v) for v in sorted(versions)).encode())
    digest.update(f"|{root}|{media}".encode())
    return f'"{digest.hexdigest()[:32]}"'


def etag_matches(header: str, etag: str) -> bool:
    """RFC 9110 §13.1.2 weak comparison of an If-None-Match value with ``etag``."""
    if header.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates


def wants_gzip(accept_encoding: str | None) -> bool:
    """Whether Accept-Encoding lists gzip (or ``*``) with a non-zero q."""
    for piece in (accept_encoding or "").split(","):
        coding, _, params = piece.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower().removeprefix("q=")
        try:
            return not params or float(q) > 0
        except ValueError:
            return False
    return False


def absolute_json(item: MetadataItem, root: str) -> str:
    """The item's JSON with BulkDataURIs rewritten to absolute URLs.

    The index renders JSON with ``": "`` separators; inside a string value a
    quote is escaped, so the pattern only ever matches the BulkDataURI key.
    """
    base = instance_url(root, item.study_uid, item.series_uid, item.sop_instance_uid)
    return item.json_text.replace(_RELATIVE, f'"BulkDataURI": "{base}/bulkdata/')


async def _xml_parts(items: list[MetadataItem], root: str) -> AsyncIterator[OutPart]:
    for item in items:
        document = dataset_to_xml(orjson.loads(absolute_json(item, root)))
        yield OutPart(APPLICATION_DICOM_XML.essence, document)


async def _json_response(
    request: Request, state: WadoState, items: list[MetadataItem], root: str, etag: str
) -> Response:
    body = ("[" + ",".join(absolute_json(item, root) for item in items) + "]").encode()
    headers = {"ETag": etag, "Vary": "Accept, Accept-Encoding", "Cache-Control": "no-cache"}
    if len(body) >= state.settings.wado.gzip_min_bytes and wants_gzip(
        request.headers.get("accept-encoding")
    ):
        body = await state.run_blocking(gzip.compress, body, GZIP_LEVEL)
        headers["Content-Encoding"] = "gzip"
    return Response(body, headers=headers, media_type="application/dicom+json")


async def _metadata(request: Request, target: Target) -> Response:
    runtime = get_runtime(request)
    state = wado_state(request)
    offer = choose(request, METADATA_OFFERS)
    root = public_root(request, runtime.settings)
    media = str(offer.inner_type or offer.media_type)
    condition = request.headers.get("if-none-match")
    if condition:
        versions = await version_list(runtime.index.pool, target)
        if not versions:
            raise NotFound(f"no such {target.level}")
        etag = metadata_etag(versions, root, media)
        if etag_matches(condition, etag):
            return Response(status_code=304, headers={"ETag": etag})
    items = await find_metadata(runtime.index.pool, target)
    if not items:
        raise NotFound(f"no such {target.level}")
    etag = metadata_etag([item.version for item in items], root, media)
    if offer.media_type.essence != MULTIPART_RELATED.essence:
        return await _json_response(request, state, items, root, etag)
    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(_xml_parts(items, root), boundary),
        headers={"ETag": etag},
        media_type=multipart_content_type(APPLICATION_DICOM_XML.essence, boundary),
    )


async def study_metadata(request: Request, study: str) -> Response:
    """Metadata of every instance of a study."""
    return await _metadata(request, Target(study))


async def series_metadata(request: Request, study: str, series: str) -> Response:
    """Metadata of every instance of a series."""
    return await _metadata(request, Target(study, series))


async def instance_metadata(request: Request, study: str, series: str, instance: str) -> Response:
    """Metadata of one instance."""
    return await _metadata(request, Target(study, series, instance))
