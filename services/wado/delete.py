"""DELETE of a study, series or instance.

The instances vanish from search and retrieve when the index transaction
commits (status ``deleted``, aggregates recomputed, one ``instance.deleted``
event each); their blobs, and the cached thumbnails of their series, are then
removed by a background task and the rows forgotten. If that task dies,
``skypacs sweep`` finishes the job for the blobs.
"""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.responses import Response

from skypacs.errors import NotFound
from skypacs.http import get_runtime
from skypacs.index.deletion import DeletedInstance, delete_target, forget_deleted
from skypacs.index.retrieve import Target
from skypacs.runtime import Runtime

from .state import wado_state
from .thumbnail import drop_series_thumbnails

log = logging.getLogger(__name__)


async def remove_blobs(runtime: Runtime, deleted: list[DeletedInstance]) -> None:
    """Delete the blobs and thumbnails of committed deletions, then forget their rows."""
    try:
        await drop_series_thumbnails(runtime, (item.series_pk for item in deleted))
    except Exception as exc:
        log.warning("thumbnails of a deleted series not removed: %s", type(exc).__name__)
    removed: list[int] = []
    for item in deleted:
        try:
            await runtime.blobs.delete(item.blob_key)
        except Exception as exc:
            log.warning("blob of a deleted instance not removed: %s", type(exc).__name__)
            continue
        removed.append(item.pk)
    if removed:
        async with runtime.index.pool.acquire() as conn:
            await forget_deleted(conn, removed)


async def _delete(request: Request, target: Target) -> Response:
    runtime = get_runtime(request)
    async with runtime.index.pool.acquire() as conn:
        deleted = await delete_target(conn, target, source=runtime.settings.events.source)
    if not deleted:
        raise NotFound(f"no such {target.level}")
    wado_state(request).spawn(remove_blobs(runtime, deleted))
    return Response(status_code=204)


async def delete_study(request: Request, study: str) -> Response:
    """Delete every instance of a study."""
    return await _delete(request, Target(study))


async def delete_series(request: Request, study: str, series: str) -> Response:
    """Delete every instance of a series."""
    return await _delete(request, Target(study, series))


async def delete_instance(request: Request, study: str, series: str, instance: str) -> Response:
    """Delete one instance."""
    return await _delete(request, Target(study, series, instance))
