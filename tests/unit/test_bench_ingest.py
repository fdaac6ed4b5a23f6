"""The ingest phase sends every instance once: a warm-up, then timed shares in rounds."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from bench.corpus import Corpus, CorpusSpec, InstanceEntry, SeriesEntry, StudyEntry
from bench.ingest_load import (
    BOUNDARY,
    INGEST,
    finish_ingest,
    start_ingest,
    take_ingest,
    warm_up_count,
)
from bench.load import LoadContext, LoadOptions

pytestmark = pytest.mark.unit


def corpus_of(tmp_path: Path, count: int) -> Corpus:
    entries = []
    for number in range(count):
        path = tmp_path / f"{number}.dcm"
        path.write_bytes(f"instance {number}".encode())
        entries.append(InstanceEntry(f"1.2.3.{number}", path, path.stat().st_size))
    study = StudyEntry(
        "1.2", "PID", "Doe^Jane", "20240601", (SeriesEntry("1.2.1", tuple(entries)),)
    )
    return Corpus(CorpusSpec(), tmp_path, (study,))


class Archive:
    """Answers every POST; records the instances of each body, or fails the chosen ones."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[list[str]] = []
        self.fail_first = fail_first

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = request.content.split(f"--{BOUNDARY}".encode())[1:-1]
        names = [part.rsplit(b"\r\n\r\n", 1)[1].strip().decode() for part in parts]
        self.received.append(names)
        failing = len(self.received) <= self.fail_first
        return httpx.Response(500 if failing else 200, json={})


async def ingest(tmp_path: Path, count: int, archive: Archive) -> tuple[list[float | None], dict]:
    transport = httpx.MockTransport(archive.handle)
    async with httpx.AsyncClient(transport=transport) as client:
        ctx = LoadContext(
            client, "http://archive/dicom-web", corpus_of(tmp_path, count), LoadOptions()
        )
        state = start_ingest(ctx)
        for _ in range(INGEST.rounds(ctx.options)):
            await take_ingest(ctx, state)
        figures = await finish_ingest(ctx, state)
    return [figure.value for figure in figures], figures[0].detail


@pytest.mark.parametrize(
    ("batches", "clients", "expected"), [(64, 4, 4), (20, 4, 4), (19, 4, 0), (1, 4, 0)]
)
def test_one_warm_up_batch_per_client_when_enough_remains(
    batches: int, clients: int, expected: int
) -> None:
    assert warm_up_count(batches, clients) == expected


async def test_every_instance_is_sent_once_and_only_the_timed_ones_count(
    tmp_path: Path,
) -> None:
    archive = Archive()
    (per_second, _), detail = await ingest(tmp_path, 640, archive)
    sent = [name for body in archive.received for name in body]
    assert sorted(sent) == sorted(f"instance {number}" for number in range(640))
    assert len(archive.received) == 64
    assert detail["warm_up"]["instances"] == 40
    assert len(detail["rounds"]) == 4
    assert detail["instances"] == 600
    assert per_second is not None


async def test_a_small_corpus_is_all_timed(tmp_path: Path) -> None:
    archive = Archive()
    (per_second, _), detail = await ingest(tmp_path, 10, archive)
    assert archive.received == [[f"instance {number}" for number in range(10)]]
    assert detail["warm_up"] == {}
    assert detail["instances"] == 10
    assert per_second is not None


async def test_failed_warm_up_batches_are_reported(tmp_path: Path) -> None:
    archive = Archive(fail_first=2)
    figures, detail = await ingest(tmp_path, 640, archive)
    assert detail["statuses"] == {500: 2, 200: 62}
    assert detail["warm_up"]["instances"] == 20
    assert detail["instances"] == 600
    assert figures[0] is not None
