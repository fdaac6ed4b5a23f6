"""Throughput phases: first frames of a series at fixed concurrency, whole-series retrieve."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from .figures import Figure, Metric
from .load import LoadContext, Phase, status_note, timed_get
from .raw_http import LeanConnection
from .stats import median, megabytes, rate

#: Frames as stored, no transcoding (PS3.18 §8.7.3.5.2); what OHIF asks for.
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
#: Whole instances as stored (PS3.18 §10.4.1.1.1).
SERIES_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'

FRAMES_PER_S = Metric("WADO first frames (6 concurrent)", "frames/s", "frames/s", True)
RETRIEVE_MB_S = Metric("WADO series retrieve", "MB/s", "MB/s", True)


async def _frames_once(ctx: LoadContext) -> tuple[float, Counter[int], int]:
    """Fetch frame 1 of every instance of the series; return seconds, statuses, bytes."""
    limit = asyncio.Semaphore(ctx.options.frame_concurrency)
    statuses: Counter[int] = Counter()
    received = 0
    base = ctx.series_url()

    async def fetch(sop_uid: str) -> None:
        nonlocal received
        async with limit:
            url = f"{base}/instances/{sop_uid}/frames/1"
            reply = await timed_get(ctx.client, url, FRAME_ACCEPT, keep_body=False)
        statuses[reply.status] += 1
        received += reply.size

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for instance in ctx.series.instances:
            group.create_task(fetch(instance.sop_uid))
    return time.perf_counter() - start, statuses, received


async def run_frames(ctx: LoadContext) -> list[Figure]:
    """Median frames/s over ``runs`` passes over the series."""
    frame_bytes = ctx.corpus.spec.rows * ctx.corpus.spec.columns * 2
    rates: list[float] = []
    for _ in range(ctx.options.runs):
        seconds, statuses, received = await _frames_once(ctx)
        if set(statuses) != {200}:
            worst = max(statuses, key=lambda status: (status != 200, statuses[status]))
            return FRAMES.unavailable(status_note(worst))
        if received < frame_bytes * len(ctx.series.instances):
            return FRAMES.unavailable(f"short answer ({received} bytes)")
        rates.append(rate(len(ctx.series.instances), seconds))
    return [Figure(FRAMES_PER_S, median(rates), detail={"runs": rates})]


async def run_retrieve(ctx: LoadContext) -> list[Figure]:
    """Median MB/s over ``retrieves`` streamed retrieves of one series (multipart
    body bytes).

    One keep-alive connection, as a viewer keeps; its first retrieve warms up.
    A retrieve lasts some 10-20 ms, and single ones ranged over a factor of
    three on a shared machine, so the median is taken over a hundred.
    """
    expected = ctx.series.size
    rates: list[float] = []
    connection = LeanConnection()
    try:
        for _ in range(ctx.options.retrieves + 1):
            reply = await connection.get(ctx.series_url(), SERIES_ACCEPT)
            if reply.status != 200:
                return RETRIEVE.unavailable(status_note(reply.status))
            if reply.size < expected:
                return RETRIEVE.unavailable(f"short answer ({reply.size} of {expected} bytes)")
            rates.append(rate(megabytes(reply.size), reply.seconds))
    finally:
        await connection.aclose()
    runs = rates[1:]
    return [Figure(RETRIEVE_MB_S, median(runs), detail={"runs": runs, "warm_up": rates[0]})]


FRAMES = Phase(FRAMES_PER_S.phase, (FRAMES_PER_S,), run_frames)
RETRIEVE = Phase(RETRIEVE_MB_S.phase, (RETRIEVE_MB_S,), run_retrieve)
