"""Retrieve rendered resources (PS3.18 §10.4.1.1.3): study, series, instance, frames.

``…/rendered`` answers consumer-ready images: each frame goes through the pixel
pipeline of :mod:`skypacs.dicom.rendering` with the request's ``window``,
``viewport`` and ``quality`` (§8.3.5.1; ``annotation`` and ``charset`` are
accepted and ignored: nothing is burned in). A study or series renders every
frame of every image instance, in retrieve order, as multipart/related; an
Encapsulated PDF instance is sent as ``application/pdf``. The first image is
made before the response starts, so its failures still get a proper status.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from skypacs.dicom.frames import check_frame_numbers, parse_frame_list
from skypacs.dicom.render_params import RenderParams, parse_render_params
from skypacs.errors import BadRequest, NotAcceptable, NotFound
from skypacs.http import get_runtime
from skypacs.index.retrieve import StoredInstance, Target, find_instances
from skypacs.runtime import Runtime

from .render_media import accepts_pdf, choose_rendering, image_response, multipart_images
from .render_source import InstanceRenderer, frame_count, is_pdf, pdf_document
from .state import WadoState, wado_state


def request_params(request: Request) -> RenderParams:
    """``window``, ``viewport`` and ``quality`` of the request's query."""
    query = request.query_params
    return parse_render_params(query.get("window"), query.get("viewport"), query.get("quality"))


@dataclass(frozen=True, slots=True)
class FrameJob:
    """One frame to render: its instance and its number (from 1)."""

    row: StoredInstance
    number: int


class RenderBatch:
    """Renders a list of frames, opening each instance's renderer once."""

    def __init__(
        self, runtime: Runtime, state: WadoState, params: RenderParams, media: str
    ) -> None:
        self._runtime = runtime
        self._state = state
        self._params = params
        self._media = media
        self._renderers: dict[int, InstanceRenderer] = {}

    async def renderer(self, row: StoredInstance) -> InstanceRenderer:
        found = self._renderers.get(row.pk)
        if found is None:
            self._renderers.clear()  # instances come in order: keep one header at a time
            found = await InstanceRenderer.open(self._runtime, self._state, row)
            self._renderers[row.pk] = found
        return found

    async def render(self, job: FrameJob) -> bytes:
        renderer = await self.renderer(job.row)
        return await renderer.render(job.number, self._params, self._media)


def _jobs(rows: list[StoredInstance], numbers: list[int] | None) -> list[FrameJob]:
    images = [row for row in rows if row.has_pixels]
    if not images:
        raise NotAcceptable("nothing here can be rendered as an image")
    if numbers is not None:
        return [FrameJob(images[0], number) for number in numbers]
    return [FrameJob(row, n) for row in images for n in range(1, frame_count(row) + 1)]


async def render_jobs(request: Request, jobs: list[FrameJob], params: RenderParams) -> Response:
    """Render ``jobs`` as one image or a multipart body, per the client's Accept."""
    runtime = get_runtime(request)
    state = wado_state(request)
    limit = runtime.settings.wado.max_frames_per_request
    choice = choose_rendering(request, frames=len(jobs))
    if choice.multipart and len(jobs) > limit:
        raise BadRequest(f"{len(jobs)} frames exceed the limit of {limit} per request")
    batch = RenderBatch(runtime, state, params, choice.media)
    first = await batch.render(jobs[0])
    state.access.record(runtime, {job.row.study_pk for job in jobs[:1]})
    if not choice.multipart:
        return image_response(first, choice.media)

    async def rest(index: int) -> bytes:
        return await batch.render(jobs[index])

    return multipart_images(first, len(jobs), rest, choice.media)


async def _rendered(request: Request, target: Target, frames: str | None = None) -> Response:
    runtime = get_runtime(request)
    params = request_params(request)
    numbers = None
    if frames is not None:
        limit = runtime.settings.wado.max_frames_per_request
        numbers = parse_frame_list(frames, max_frames=limit)
    rows = await find_instances(runtime.index.pool, target)
    if not rows:
        raise NotFound(f"no such {target.level}")
    if target.level == "instance" and is_pdf(rows[0]) and numbers is None:
        accepts_pdf(request)
        document = await pdf_document(runtime, wado_state(request), rows[0])
        return image_response(document, "application/pdf")
    if numbers is not None:
        if not rows[0].has_pixels:
            raise NotFound("the instance has no pixel data")
        check_frame_numbers(numbers, frame_count(rows[0]))
    return await render_jobs(request, _jobs(rows, numbers), params)


async def render_study(request: Request, study: str) -> Response:
    """Every frame of every image instance of a study, rendered."""
    return await _rendered(request, Target(study))


async def render_series(request: Request, study: str, series: str) -> Response:
    """Every frame of every image instance of a series, rendered."""
    return await _rendered(request, Target(study, series))


async def render_instance(request: Request, study: str, series: str, instance: str) -> Response:
    """One instance rendered (all its frames), or its PDF document."""
    return await _rendered(request, Target(study, series, instance))


async def render_frames(
    request: Request, study: str, series: str, instance: str, frames: str
) -> Response:
    """The listed frames of one instance, rendered."""
    return await _rendered(request, Target(study, series, instance), frames)
