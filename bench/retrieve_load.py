"""Throughput phases: first frames of a series at fixed concurrency, whole-series retrieve
(taken in rounds across the servers)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

from .figures import Figure, Metric
from .load import LoadContext, LoadOptions, Phase, RoundsPhase, status_note, timed_get
from .raw_http import LeanConnection, ProtocolError
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


#: Rounds of the series retrieve phase (see :class:`~bench.load.RoundsPhase`).
RETRIEVE_ROUNDS = 20


@dataclass
class RetrieveState:
    """One server's series retrieves: one keep-alive connection, as a viewer keeps."""

    connection: LeanConnection = field(default_factory=LeanConnection)
    rates: list[float] = field(default_factory=list)
    warm_up: float | None = None
    failure: str = ""


def retrieve_rounds(options: LoadOptions) -> int:
    return min(RETRIEVE_ROUNDS, options.retrieves)


def start_retrieves(ctx: LoadContext) -> RetrieveState:
    return RetrieveState()


async def take_retrieves(ctx: LoadContext, state: RetrieveState) -> None:
    """One round: this server's share of the ``retrieves`` timed retrieves (the
    first round also makes one untimed retrieve that warms the connection)."""
    if state.failure:
        return
    share = math.ceil(ctx.options.retrieves / retrieve_rounds(ctx.options))
    if state.warm_up is None:
        state.warm_up = await _one_retrieve(ctx, state)
    for _ in range(share):
        if state.failure or len(state.rates) >= ctx.options.retrieves:
            return
        state.rates.append(await _one_retrieve(ctx, state))


async def _one_retrieve(ctx: LoadContext, state: RetrieveState) -> float:
    """MB/s of one retrieve (multipart body bytes); a wrong answer sets ``failure``."""
    expected = ctx.series.size
    try:
        reply = await state.connection.get(ctx.series_url(), SERIES_ACCEPT)
    except (OSError, ProtocolError) as exc:
        state.failure = f"error ({type(exc).__name__})"
        return 0.0
    if reply.status != 200:
        state.failure = status_note(reply.status)
    elif reply.size < expected:
        state.failure = f"short answer ({reply.size} of {expected} bytes)"
    return rate(megabytes(reply.size), reply.seconds)


async def finish_retrieves(ctx: LoadContext, state: RetrieveState) -> list[Figure]:
    """The median MB/s: a retrieve lasts some 10-20 ms, and single ones ranged over
    a factor of three on a shared machine, so it is taken over many."""
    await state.connection.aclose()
    if state.failure:
        return RETRIEVE.unavailable(state.failure)
    if not state.rates:
        return RETRIEVE.unavailable("not run")
    detail = {"runs": state.rates, "warm_up": state.warm_up}
    return [Figure(RETRIEVE_MB_S, median(state.rates), detail=detail)]


FRAMES = Phase(FRAMES_PER_S.phase, (FRAMES_PER_S,), run_frames)
RETRIEVE: RoundsPhase[RetrieveState] = RoundsPhase(
    RETRIEVE_MB_S.phase,
    (RETRIEVE_MB_S,),
    rounds=retrieve_rounds,
    start=start_retrieves,
    take=take_retrieves,
    finish=finish_retrieves,
)
