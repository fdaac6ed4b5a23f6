"""STOW-RS ingest: batches of instances per multipart POST from concurrent clients.

The corpus is stored in rounds, a share per round on each server in turn (see
:class:`~bench.load.RoundsPhase`), so that a shared machine's drift over the
seconds an ingest lasts hits every server alike. The first round starts with
one untimed batch per client: a fresh server's first requests open its
connections and fill its caches, a cost paid once per start rather than per
instance, which would otherwise weigh on the first server measured.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .corpus import InstanceEntry
from .figures import Figure, Metric
from .load import LoadContext, LoadOptions, RoundsPhase, status_note
from .stats import megabytes, rate

BOUNDARY = "skypacs-bench-7d1c0b5e"
STORED = (200,)
#: Rounds of the timed ingest (see the module docstring).
INGEST_ROUNDS = 4

INSTANCES_PER_S = Metric("STOW ingest", "instances/s", "instances/s", higher_is_better=True)
MEGABYTES_PER_S = Metric("STOW ingest", "MB/s", "MB/s", higher_is_better=True)


def multipart_body(paths: Sequence[InstanceEntry]) -> bytes:
    """A ``multipart/related; type="application/dicom"`` body (PS3.18 §10.5.1.2)."""
    pieces: list[bytes] = []
    for entry in paths:
        pieces.append(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        pieces.append(entry.path.read_bytes())
        pieces.append(b"\r\n")
    pieces.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(pieces)


def content_type() -> str:
    return f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def batches(items: Sequence[InstanceEntry], size: int) -> list[list[InstanceEntry]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


@dataclass
class IngestTally:
    instances: int = 0
    payload_bytes: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)


@dataclass
class IngestState:
    """One server's ingest: the batches still to send and what the timed ones stored."""

    warm_up: list[list[InstanceEntry]]
    timed: list[list[InstanceEntry]]
    share: int
    tally: IngestTally = field(default_factory=IngestTally)
    round_rates: list[float] = field(default_factory=list)
    warm_up_detail: dict[str, object] = field(default_factory=dict)


def warm_up_count(batch_count: int, clients: int) -> int:
    """Untimed batches: one per client, when at least four times as many remain to time."""
    return clients if batch_count >= 5 * clients else 0


def ingest_rounds(options: LoadOptions) -> int:
    return INGEST_ROUNDS


def start_ingest(ctx: LoadContext) -> IngestState:
    every = batches(list(ctx.corpus.instances()), ctx.options.batch_size)
    warm = warm_up_count(len(every), ctx.options.stow_clients)
    timed = every[warm:]
    share = max(1, math.ceil(len(timed) / INGEST_ROUNDS))
    return IngestState(warm_up=every[:warm], timed=timed, share=share)


async def _client(
    ctx: LoadContext, queue: Iterator[list[InstanceEntry]], tally: IngestTally
) -> None:
    url = f"{ctx.dicomweb}/studies"
    headers = {"Content-Type": content_type(), "Accept": "application/dicom+json"}
    for batch in queue:
        body = await asyncio.to_thread(multipart_body, batch)
        response = await ctx.client.post(url, content=body, headers=headers)
        tally.statuses[response.status_code] += 1
        if response.status_code in STORED:
            tally.instances += len(batch)
            tally.payload_bytes += sum(entry.size for entry in batch)


async def _store(ctx: LoadContext, share: list[list[InstanceEntry]], tally: IngestTally) -> float:
    """Send ``share`` from ``stow_clients`` concurrent clients; the seconds it took."""
    queue = iter(share)
    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(ctx.options.stow_clients):
            group.create_task(_client(ctx, queue, tally))
    return time.perf_counter() - start


async def take_ingest(ctx: LoadContext, state: IngestState) -> None:
    """One round: the warm-up batches (first round only), then this round's share, timed."""
    if state.warm_up:
        warm = IngestTally()
        seconds = await _store(ctx, state.warm_up, warm)
        state.warm_up = []
        state.tally.statuses.update(warm.statuses)
        state.warm_up_detail = {
            "instances": warm.instances,
            "seconds": round(seconds, 3),
            "instances_per_s": round(rate(warm.instances, seconds), 1),
        }
    share, state.timed = state.timed[: state.share], state.timed[state.share :]
    if not share:
        return
    stored = state.tally.instances
    seconds = await _store(ctx, share, state.tally)
    state.tally.seconds += seconds
    state.round_rates.append(round(rate(state.tally.instances - stored, seconds), 1))


async def finish_ingest(ctx: LoadContext, state: IngestState) -> list[Figure]:
    """Throughput of the timed rounds, counting only instances stored with a 200."""
    tally = state.tally
    if tally.instances == 0:
        worst = tally.statuses.most_common(1)[0][0] if tally.statuses else 0
        return INGEST.unavailable(status_note(worst))
    failed = sum(count for status, count in tally.statuses.items() if status not in STORED)
    note = f"{failed} batch(es) not stored {dict(tally.statuses)}" if failed else ""
    detail = {
        "instances": tally.instances,
        "seconds": round(tally.seconds, 3),
        "statuses": dict(tally.statuses),
        "rounds": state.round_rates,
        "warm_up": state.warm_up_detail,
    }
    return [
        Figure(INSTANCES_PER_S, rate(tally.instances, tally.seconds), note, detail),
        Figure(MEGABYTES_PER_S, rate(megabytes(tally.payload_bytes), tally.seconds), note, detail),
    ]


INGEST: RoundsPhase[IngestState] = RoundsPhase(
    INSTANCES_PER_S.phase,
    (INSTANCES_PER_S, MEGABYTES_PER_S),
    rounds=ingest_rounds,
    start=start_ingest,
    take=take_ingest,
    finish=finish_ingest,
)
