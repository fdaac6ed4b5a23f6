"""Run every phase against each server in turn, with bounded time per phase."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from . import orthanc_launcher
from .corpus import Corpus
from .figures import Figure, Metric
from .ingest_load import INGEST
from .large_instance import LARGE
from .load import LoadContext, LoadOptions, Phase, RoundsPhase, make_client
from .memory import MemorySampler
from .processes import LaunchError
from .query_load import METADATA_PHASE, QIDO_PHASES
from .retrieve_load import FRAMES, RETRIEVE
from .seaweedfs_launcher import run_seaweedfs
from .servers import RunningServer
from .skypacs_launcher import run_skypacs
from .table import ORTHANC, SKYPACS_FS, SKYPACS_S3

PHASES: tuple[Phase | RoundsPhase[Any], ...] = (
    INGEST,
    *QIDO_PHASES,
    METADATA_PHASE,
    FRAMES,
    RETRIEVE,
    LARGE,
)
PEAK_MEMORY = "peak memory"
SERVER_CHOICES = {"fs": SKYPACS_FS, "s3": SKYPACS_S3, "orthanc": ORTHANC}

Launcher = Callable[[Path], AbstractContextManager[RunningServer]]


@dataclass
class ServerRun:
    """What one server produced: figures, memory peaks, versions, or why it did not run."""

    label: str
    figures: list[Figure] = field(default_factory=list)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    error: str = ""


def memory_figure(phase: str, peak: dict[str, float]) -> Figure:
    """Peak PSS of the server's processes, summed, during ``phase`` (see ``memory``)."""
    metric = Metric(phase, PEAK_MEMORY, "MB", higher_is_better=False)
    return Figure(metric, peak["total_mb"], detail=peak)


async def run_phase(ctx: LoadContext, phase: Phase, timeout_s: float) -> list[Figure]:
    """One phase, bounded in time; transport failures become notes, not crashes."""
    try:
        async with asyncio.timeout(timeout_s):
            return await phase.run(ctx)
    except TimeoutError:
        return phase.unavailable(f"timeout after {timeout_s:.0f} s")
    except httpx.HTTPError as exc:
        return phase.unavailable(f"error ({type(exc).__name__})")
    except ExceptionGroup as group:
        failures = group.subgroup(httpx.HTTPError)
        if failures is None:
            raise
        return phase.unavailable(f"error ({type(failures.exceptions[0]).__name__})")


@dataclass
class Contestant:
    """A started server and what measures it during the run."""

    server: RunningServer
    result: ServerRun
    ctx: LoadContext
    sampler: MemorySampler


async def measure_phase(contestant: Contestant, phase: Phase, timeout_s: float) -> None:
    """One phase on one server, with its peak memory."""
    server, result, sampler = contestant.server, contestant.result, contestant.sampler
    say(f"  {server.label}: {phase.name}")
    async with sampler.phase(phase.name):
        result.figures.extend(await run_phase(contestant.ctx, phase, timeout_s))
    record_memory(contestant, phase.name)


def record_memory(contestant: Contestant, phase: str) -> None:
    peak = contestant.sampler.peaks[phase].as_megabytes()
    contestant.result.memory[phase] = peak
    contestant.result.figures.append(memory_figure(phase, peak))


async def measure_rounds(
    contestants: list[Contestant], phase: RoundsPhase[Any], timeout_s: float
) -> None:
    """A phase in rounds, every round on every server in turn (see :class:`RoundsPhase`);
    ``timeout_s`` bounds each server's share of a round."""
    states = [phase.start(contestant.ctx) for contestant in contestants]
    failures: dict[int, str] = {}
    rounds = phase.rounds(contestants[0].ctx.options) if contestants else 0
    for contestant in contestants:
        say(f"  {contestant.server.label}: {phase.name} ({rounds} rounds, servers in turn)")
    for _ in range(rounds):
        for position, contestant in enumerate(contestants):
            if position in failures:
                continue
            async with contestant.sampler.phase(phase.name):
                try:
                    async with asyncio.timeout(timeout_s):
                        await phase.take(contestant.ctx, states[position])
                except TimeoutError:
                    failures[position] = f"timeout after {timeout_s:.0f} s"
    for position, contestant in enumerate(contestants):
        figures = await phase.finish(contestant.ctx, states[position])
        if position in failures:
            figures = phase.unavailable(failures[position])
        contestant.result.figures.extend(figures)
        record_memory(contestant, phase.name)


async def run_interleaved(
    servers: list[RunningServer], corpus: Corpus, options: LoadOptions, timeout_s: float
) -> list[ServerRun]:
    """Every phase on every server in turn, so a phase's figures are taken seconds
    apart: a machine whose speed drifts over minutes then skews no comparison."""
    connections = max(options.stow_clients, options.frame_concurrency)
    async with AsyncExitStack() as stack:
        contestants: list[Contestant] = []
        for server in servers:
            client = await stack.enter_async_context(make_client(connections))
            sampler = MemorySampler(server)
            await stack.enter_async_context(sampler.running())
            result = ServerRun(server.label, versions=server.versions, settings=server.settings)
            ctx = LoadContext(client, server.dicomweb, corpus, options)
            contestants.append(Contestant(server, result, ctx, sampler))
        for phase in PHASES:
            if isinstance(phase, RoundsPhase):
                await measure_rounds(contestants, phase, timeout_s)
                continue
            for contestant in contestants:
                await measure_phase(contestant, phase, timeout_s)
    return [contestant.result for contestant in contestants]


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@contextmanager
def skypacs_on_s3(root: Path) -> Iterator[RunningServer]:
    with run_seaweedfs(root) as s3, run_skypacs(SKYPACS_S3, root / "data", s3.skypacs_env()) as srv:
        srv.versions["seaweedfs"] = s3.version
        yield srv


def skypacs_on_fs(root: Path) -> AbstractContextManager[RunningServer]:
    return run_skypacs(SKYPACS_FS, root / "data")


LAUNCHERS: dict[str, Launcher] = {
    SKYPACS_FS: skypacs_on_fs,
    SKYPACS_S3: skypacs_on_s3,
    ORTHANC: orthanc_launcher.run_orthanc,
}


def run_servers(
    labels: list[str], run_root: Path, corpus: Corpus, options: LoadOptions, timeout_s: float
) -> list[ServerRun]:
    """Start every server on fresh data, measure them phase by phase, stop them
    (also on Ctrl-C or error). A server that cannot start is reported, not fatal."""
    with ExitStack() as stack:
        started: list[RunningServer] = []
        failed: dict[str, ServerRun] = {}
        for label in labels:
            root = run_root / label.lower()
            root.mkdir(parents=True, exist_ok=True)
            try:
                server = stack.enter_context(LAUNCHERS[label](root))
            except (LaunchError, OSError) as exc:
                say(f"{label}: not measured: {exc}")
                failed[label] = ServerRun(label, error=str(exc))
                continue
            say(f"{label}: ready at {server.dicomweb}")
            started.append(server)
        measured = asyncio.run(run_interleaved(started, corpus, options, timeout_s))
    by_label = {run.label: run for run in measured} | failed
    return [by_label[label] for label in labels]


def selected_servers(names: list[str]) -> list[str]:
    """Labels to run in a fixed order; Orthanc is skipped when it is not installed."""
    labels = [label for key, label in SERVER_CHOICES.items() if key in names]
    if ORTHANC in labels and not orthanc_launcher.available():
        say("Orthanc with its DICOMweb plugin is not installed: running SkyPACS only")
        labels.remove(ORTHANC)
    return labels
