"""A phase taken in rounds visits every server in turn, round after round."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from bench.corpus import Corpus, CorpusSpec
from bench.figures import Figure, Metric
from bench.load import LoadContext, LoadOptions, RoundsPhase
from bench.memory import MemorySampler
from bench.runner import Contestant, ServerRun, measure_rounds
from bench.servers import RunningServer

pytestmark = pytest.mark.unit

COUNT = Metric("rounds test", "samples", "samples", higher_is_better=True)


@dataclass
class Tally:
    samples: list[int] = field(default_factory=list)
    finished: bool = False


def contestant(label: str, client: httpx.AsyncClient) -> Contestant:
    server = RunningServer(label, f"http://{label}/dicom-web", os.getpid())
    corpus = Corpus(CorpusSpec(), Path(), ())
    ctx = LoadContext(client, server.dicomweb, corpus, LoadOptions())
    return Contestant(server, ServerRun(label), ctx, MemorySampler(server))


def phase(visits: list[tuple[str, int]], stall: str = "") -> RoundsPhase[Tally]:
    async def take(ctx: LoadContext, tally: Tally) -> None:
        visits.append((ctx.dicomweb, len(tally.samples)))
        if ctx.dicomweb.startswith(f"http://{stall}/"):
            await asyncio.sleep(10)
        tally.samples.append(len(tally.samples))

    async def finish(ctx: LoadContext, tally: Tally) -> list[Figure]:
        tally.finished = True
        return [Figure(COUNT, float(len(tally.samples)))]

    return RoundsPhase(
        COUNT.phase, (COUNT,), rounds=lambda _: 3, start=lambda _: Tally(), take=take, finish=finish
    )


def figures_of(entrant: Contestant) -> dict[str, Figure]:
    return {figure.metric.name: figure for figure in entrant.result.figures}


async def test_each_round_visits_every_server_before_the_next_round() -> None:
    visits: list[tuple[str, int]] = []
    async with httpx.AsyncClient() as client:
        entrants = [contestant("a", client), contestant("b", client)]
        await measure_rounds(entrants, phase(visits), timeout_s=5)
    a, b = "http://a/dicom-web", "http://b/dicom-web"
    assert visits == [(a, 0), (b, 0), (a, 1), (b, 1), (a, 2), (b, 2)]
    for entrant in entrants:
        figures = figures_of(entrant)
        assert figures["samples"].value == 3
        assert figures["peak memory"].value is not None
        assert figures["peak memory"].value > 0


async def test_a_server_that_times_out_is_dropped_from_later_rounds() -> None:
    visits: list[tuple[str, int]] = []
    async with httpx.AsyncClient() as client:
        entrants = [contestant("a", client), contestant("b", client)]
        await measure_rounds(entrants, phase(visits, stall="a"), timeout_s=0.05)
    assert [server for server, _ in visits].count("http://a/dicom-web") == 1
    assert figures_of(entrants[0])["samples"].value is None
    assert figures_of(entrants[0])["samples"].note == "timeout after 0 s"
    assert figures_of(entrants[1])["samples"].value == 3
