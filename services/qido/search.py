"""The QIDO-RS transaction (PS3.18 §10.6): parse, search the index, answer.

Answers are ``application/dicom+json`` (the default) or ``multipart/related;
type="application/dicom+xml"`` with one Native DICOM Model document per result
(PS3.19). A page cut by the limit carries ``Warning: 299`` (PS3.18 §8.3.4.4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from fastapi import Request
from starlette.responses import Response

from skypacs.dicomweb.accept import Offer, accept_from_request, negotiate
from skypacs.dicomweb.media_types import (
    APPLICATION_DICOM_JSON,
    APPLICATION_DICOM_XML,
    APPLICATION_JSON,
    MULTIPART_RELATED,
)
from skypacs.dicomweb.multipart import (
    OutPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from skypacs.dicomweb.native_xml import dataset_to_xml
from skypacs.dicomweb.qido_params import Level, QidoQuery, parse_query
from skypacs.dicomweb.qido_results import instance_tags, result_dataset
from skypacs.http import get_runtime, public_root
from skypacs.index.search import SearchPage, search
from skypacs.runtime import Runtime

OFFERS: Final = (
    Offer(APPLICATION_DICOM_JSON),
    Offer(MULTIPART_RELATED, inner_type=APPLICATION_DICOM_XML),
    Offer(APPLICATION_JSON),
)
MORE_RESULTS: Final = "There are additional results that can be requested"
OVER_MAXIMUM: Final = (
    "The number of results exceeded the maximum supported by the server. "
    "Additional results can be requested."
)


def _warning(base: str, query: QidoQuery, maximum: int) -> str:
    host = urlsplit(base).netloc
    over = query.limit is None or query.limit > maximum
    return f'299 {host}: "{OVER_MAXIMUM if over else MORE_RESULTS}"'


async def _xml_parts(results: list[dict[str, Any]]) -> AsyncIterator[OutPart]:
    for result in results:
        yield OutPart(APPLICATION_DICOM_XML.essence, dataset_to_xml(result))


async def _render(offer: Offer, results: list[dict[str, Any]]) -> tuple[bytes, str]:
    if offer.media_type == MULTIPART_RELATED:
        boundary = new_boundary()
        body = b"".join([chunk async for chunk in write_multipart(_xml_parts(results), boundary)])
        return body, multipart_content_type(APPLICATION_DICOM_XML.essence, boundary)
    return orjson.dumps(results), offer.media_type.essence


async def _run(runtime: Runtime, query: QidoQuery) -> tuple[SearchPage, int]:
    settings = runtime.settings.qido
    maximum = settings.max_results
    limit = min(query.limit or maximum, maximum)
    async with runtime.index.pool.acquire() as conn:
        page = await search(
            conn,
            query,
            limit=limit,
            extra_tags=frozenset(settings.extra_query_tags),
            instance_tags=instance_tags(query),
        )
    return page, maximum


async def answer(
    request: Request, level: Level, study: str | None = None, series: str | None = None
) -> Response:
    """Search ``level`` (scoped to ``study``/``series``) and render the results."""
    query = parse_query(
        request.query_params.multi_items(), level, study_uid=study, series_uid=series
    )
    accept = accept_from_request(
        request.headers.get("accept"), request.query_params.getlist("accept")
    )
    offer = negotiate(accept, OFFERS)
    runtime = get_runtime(request)
    page, maximum = await _run(runtime, query)
    root = public_root(request, runtime.settings)
    results = [result_dataset(hit, query, root) for hit in page.hits]
    body, media_type = await _render(offer, results)
    headers = {"Warning": _warning(root, query, maximum)} if page.more else None
    return Response(body, status_code=200, headers=headers, media_type=media_type)


async def search_studies(request: Request) -> Response:
    """``GET /studies``."""
    return await answer(request, Level.STUDY)


async def search_study_series(request: Request, study: str) -> Response:
    """``GET /studies/{study}/series``."""
    return await answer(request, Level.SERIES, study)


async def search_series(request: Request) -> Response:
    """``GET /series``."""
    return await answer(request, Level.SERIES)


async def search_series_instances(request: Request, study: str, series: str) -> Response:
    """``GET /studies/{study}/series/{series}/instances``."""
    return await answer(request, Level.INSTANCE, study, series)


async def search_study_instances(request: Request, study: str) -> Response:
    """``GET /studies/{study}/instances``."""
    return await answer(request, Level.INSTANCE, study)


async def search_instances(request: Request) -> Response:
    """``GET /instances``."""
    return await answer(request, Level.INSTANCE)
