"""Retrieve thumbnails (PS3.18 §10.4.1.1.3, thumbnail resources): one small image.

The representative frame of a study is that of its first series; of a series,
the middle frame of its middle image instance; of a frame list, the first frame
listed. The image fits ``viewport`` (default ``SKYPACS_WADO__THUMBNAIL_SIZE``
square) and uses the data set's own window. Thumbnails are kept in the blob
store under a key made of the series' primary key and last-change time (never
client input); a change to the series changes the key, and older entries of that
series are removed in the background, and all of a series' entries after a
DELETE in it (:func:`drop_series_thumbnails`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Final

from fastapi import Request
from starlette.responses import Response

from skypacs.dicom.frames import check_frame_numbers, parse_frame_list
from skypacs.dicom.render_params import RenderParams, Viewport, parse_viewport
from skypacs.dicomweb.accept import Offer
from skypacs.dicomweb.media_types import IMAGE_JPEG, IMAGE_PNG
from skypacs.errors import NotFound
from skypacs.http import get_runtime
from skypacs.index.render_cache import SeriesStamp, series_stamp
from skypacs.index.retrieve import StoredInstance, Target, find_instances
from skypacs.runtime import Runtime
from skypacs.storage import BlobNotFound

from .negotiation import choose
from .render_media import image_response
from .render_source import InstanceRenderer, frame_count
from .state import wado_state

log = logging.getLogger(__name__)

CACHE_PREFIX: Final = "render-cache/thumbnails"
_EXTENSION: Final = {"image/jpeg": "jpg", "image/png": "png"}


def representative(rows: list[StoredInstance]) -> StoredInstance:
    """The middle image instance of the first series that has images."""
    images = [row for row in rows if row.has_pixels]
    if not images:
        raise NotFound("nothing here has pixel data for a thumbnail")
    first_series = [row for row in images if row.series_uid == images[0].series_uid]
    return first_series[(len(first_series) - 1) // 2]


def cache_key(
    stamp: SeriesStamp, row: StoredInstance, frame: int, size: Viewport, media: str
) -> str:
    """Blob key of a cached thumbnail: internal numbers only."""
    name = f"{row.version}-{frame}-{size.width}x{size.height}.{_EXTENSION[media]}"
    return f"{CACHE_PREFIX}/{stamp.series_pk}/{stamp.token}/{name}"


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def drop_series_thumbnails(runtime: Runtime, series_pks: Iterable[int]) -> None:
    """Remove every cached thumbnail of these series (after a DELETE in them).

    A deleted series is never asked for again, so its thumbnails, which show
    patient images, would otherwise stay in the blob store for good.
    """
    for series_pk in sorted(set(series_pks)):
        async for info in runtime.blobs.list(f"{CACHE_PREFIX}/{series_pk}/"):
            await runtime.blobs.delete(info.key)


async def _drop_stale(runtime: Runtime, stamp: SeriesStamp) -> None:
    """Remove thumbnails of ``stamp``'s series made before its last change."""
    current = f"{CACHE_PREFIX}/{stamp.series_pk}/{stamp.token}/"
    async for info in runtime.blobs.list(f"{CACHE_PREFIX}/{stamp.series_pk}/"):
        if not info.key.startswith(current):
            await runtime.blobs.delete(info.key)


class ThumbnailCache:
    """Thumbnails in the blob store; store failures only cost a re-render later."""

    def __init__(self, request: Request) -> None:
        self._runtime = get_runtime(request)
        self._state = wado_state(request)

    async def get(self, key: str) -> bytes | None:
        try:
            return await self._runtime.blobs.read(key)
        except BlobNotFound:
            return None

    async def put(self, key: str, data: bytes, stamp: SeriesStamp) -> None:
        try:
            await self._runtime.blobs.put(key, _once(data))
        except Exception as exc:
            log.warning("thumbnail not cached: %s", type(exc).__name__)
            return
        self._state.spawn(_drop_stale(self._runtime, stamp))


async def _thumbnail(request: Request, target: Target, frames: str | None = None) -> Response:
    runtime = get_runtime(request)
    settings = runtime.settings.wado
    edge = settings.thumbnail_size
    size = parse_viewport(request.query_params.get("viewport")) or Viewport(edge, edge)
    media = choose(request, [Offer(IMAGE_JPEG), Offer(IMAGE_PNG)]).media_type.essence
    rows = await find_instances(runtime.index.pool, target)
    if not rows:
        raise NotFound(f"no such {target.level}")
    row = representative(rows)
    if frames is not None:
        numbers = parse_frame_list(frames, max_frames=settings.max_frames_per_request)
        check_frame_numbers(numbers, frame_count(row))
        number = numbers[0]
    else:
        number = (frame_count(row) + 1) // 2
    stamp = await series_stamp(runtime.index.pool, row.study_uid, row.series_uid)
    if stamp is None:
        raise NotFound(f"no such {target.level}")
    cache = ThumbnailCache(request)
    key = cache_key(stamp, row, number, size, media)
    cached = await cache.get(key)
    if cached is not None:
        return image_response(cached, media)
    renderer = await InstanceRenderer.open(runtime, wado_state(request), row)
    params = RenderParams(viewport=size, quality=settings.thumbnail_quality)
    image = await renderer.render(number, params, media)
    await cache.put(key, image, stamp)
    return image_response(image, media)


async def thumbnail_study(request: Request, study: str) -> Response:
    """Thumbnail of a study."""
    return await _thumbnail(request, Target(study))


async def thumbnail_series(request: Request, study: str, series: str) -> Response:
    """Thumbnail of a series."""
    return await _thumbnail(request, Target(study, series))


async def thumbnail_instance(request: Request, study: str, series: str, instance: str) -> Response:
    """Thumbnail of an instance."""
    return await _thumbnail(request, Target(study, series, instance))


async def thumbnail_frames(
    request: Request, study: str, series: str, instance: str, frames: str
) -> Response:
    """Thumbnail of the first listed frame of an instance."""
    return await _thumbnail(request, Target(study, series, instance), frames)
