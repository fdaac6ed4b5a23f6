"""The shared load generator: one httpx client (HTTP/1.1 keep-alive) and phase plumbing."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from .corpus import Corpus, SeriesEntry, StudyEntry
from .figures import Figure, Metric

DICOM_JSON = "application/dicom+json"
REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LoadOptions:
    """How hard and how often each phase pushes."""

    repeat: int = 30
    runs: int = 5
    #: Series retrieves behind the throughput figure (each lasts some 10-20 ms).
    retrieves: int = 100
    batch_size: int = 10
    stow_clients: int = 4
    frame_concurrency: int = 6


@dataclass(frozen=True)
class LoadContext:
    client: httpx.AsyncClient
    dicomweb: str
    corpus: Corpus
    options: LoadOptions

    @property
    def study(self) -> StudyEntry:
        return self.corpus.sample_study

    @property
    def series(self) -> SeriesEntry:
        return self.study.series[0]

    def series_url(self) -> str:
        return f"{self.dicomweb}/studies/{self.study.study_uid}/series/{self.series.series_uid}"


PhaseRun = Callable[[LoadContext], Awaitable[list[Figure]]]


@dataclass(frozen=True)
class Phase:
    """A named load phase, the metrics it reports and the coroutine that measures them."""

    name: str
    metrics: tuple[Metric, ...]
    run: PhaseRun

    def unavailable(self, reason: str) -> list[Figure]:
        return [Figure.missing(metric, reason) for metric in self.metrics]


State = TypeVar("State")


@dataclass(frozen=True)
class RoundsPhase(Generic[State]):
    """A phase taken in rounds, each round run on every server in turn.

    For a figure made of many short samples (a series retrieve lasts some 10 ms)
    a phase run on one server after the other still compares windows a second
    or two apart, and a shared machine's speed moves within that. Here each
    round takes a few samples per server, so the servers share every
    disturbance. ``start`` makes a server's state (kept across rounds), ``take``
    adds one round's samples to it, ``finish`` turns it into figures and
    releases it.
    """

    name: str
    metrics: tuple[Metric, ...]
    rounds: Callable[[LoadOptions], int]
    start: Callable[[LoadContext], State]
    take: Callable[[LoadContext, State], Awaitable[None]]
    finish: Callable[[LoadContext, State], Awaitable[list[Figure]]]

    def unavailable(self, reason: str) -> list[Figure]:
        return [Figure.missing(metric, reason) for metric in self.metrics]


def make_client(connections: int) -> httpx.AsyncClient:
    """HTTP/1.1 with keep-alive, bounded pool and timeouts."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        http2=False, limits=limits, timeout=httpx.Timeout(REQUEST_TIMEOUT_S), trust_env=False
    )


def status_note(status: int) -> str:
    """How a figure reads when the server did not serve the request."""
    return f"n/a ({status})"


@dataclass(frozen=True)
class Reply:
    status: int
    seconds: float
    size: int
    body: bytes


async def timed_get(
    client: httpx.AsyncClient, url: str, accept: str, *, keep_body: bool = True
) -> Reply:
    """GET ``url``, streaming the body; the time covers the last byte received."""
    start = time.perf_counter()
    size = 0
    chunks: list[bytes] = []
    async with client.stream("GET", url, headers={"Accept": accept}) as response:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if keep_body:
                chunks.append(chunk)
        status = response.status_code
    return Reply(status, time.perf_counter() - start, size, b"".join(chunks))
