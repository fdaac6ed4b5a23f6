"""STOW-RS ingest: batches of instances per multipart POST from concurrent clients."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .corpus import InstanceEntry
from .figures import Figure, Metric
from .load import LoadContext, Phase, status_note
from .stats import megabytes, rate

BOUNDARY = "skypacs-bench-7d1c0b5e"
STORED = (200,)

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
    statuses: Counter[int] = field(default_factory=Counter)


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


async def run_ingest(ctx: LoadContext) -> list[Figure]:
    """Store the whole corpus; throughput counts only instances stored with a 200."""
    queue = iter(batches(list(ctx.corpus.instances()), ctx.options.batch_size))
    tally = IngestTally()
    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(ctx.options.stow_clients):
            group.create_task(_client(ctx, queue, tally))
    elapsed = time.perf_counter() - start
    if tally.instances == 0:
        worst = tally.statuses.most_common(1)[0][0] if tally.statuses else 0
        return INGEST.unavailable(status_note(worst))
    failed = sum(count for status, count in tally.statuses.items() if status not in STORED)
    note = f"{failed} batch(es) not stored {dict(tally.statuses)}" if failed else ""
    detail = {"seconds": round(elapsed, 3), "statuses": dict(tally.statuses)}
    return [
        Figure(INSTANCES_PER_S, rate(tally.instances, elapsed), note, detail),
        Figure(MEGABYTES_PER_S, rate(megabytes(tally.payload_bytes), elapsed), note, detail),
    ]


INGEST = Phase(INSTANCES_PER_S.phase, (INSTANCES_PER_S, MEGABYTES_PER_S), run_ingest)
