"""An acknowledged STOW-RS store survives the server being killed mid-upload.

A client uploads 200 instances one POST at a time; after 60 acknowledgements
the next upload sends half its bytes and waits, and once the server has claimed
that instance (a ``creating`` row exists) the server is killed with SIGKILL, so
the kill lands mid-request, between the claim and the commit. After a restart
on the same data dir and a sweep, every acknowledged instance is stored with
its exact bytes, and nothing half-done is left: no ``creating`` rows and no
blob without a row.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.fixtures.skypacs import ServerProcess, skypacs_executable, start_server
from tests.integration.stow_helpers import as_stored, part10, synthesize_study

pytestmark = pytest.mark.integration

TOTAL = 200
KILL_AFTER = 60
BLOB_SUFFIX = "@data"


@dataclass
class Uploader:
    """Sequential single-instance POSTs from a background thread.

    Upload number ``KILL_AFTER + 1`` sends half its body, sets ``in_flight`` and
    waits for ``killed`` before sending the rest.
    """

    url: str
    files: list[tuple[str, bytes]]
    acknowledged: list[str] = field(default_factory=list)
    in_flight: threading.Event = field(default_factory=threading.Event)
    killed: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def _stalled(self, data: bytes) -> Iterator[bytes]:
        half = len(data) // 2
        yield data[:half]
        self.in_flight.set()
        self.killed.wait(120)
        yield data[half:]

    def run(self) -> None:
        try:
            with httpx.Client(timeout=120) as client:
                for uid, data in self.files:
                    stall = len(self.acknowledged) == KILL_AFTER
                    response = client.post(
                        self.url,
                        content=self._stalled(data) if stall else data,
                        headers={"Content-Type": "application/dicom"},
                    )
                    if response.status_code == 200:
                        self.acknowledged.append(uid)
        except httpx.HTTPError:
            pass  # the server was killed under this request
        finally:
            self.in_flight.set()
            self.done.set()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The server's data dir; an embedded Postgres left running by a failure is stopped."""
    path = tmp_path / "var"
    yield path
    if (path / "postgres" / "postmaster.pid").exists():
        start_server(path).stop()


def _sweep(data_dir: Path) -> str:
    result = subprocess.run(
        [
            skypacs_executable(),
            "sweep",
            "--data-dir",
            str(data_dir),
            "--stale-after",
            "0",
            "--orphan-grace",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _blob_files(data_dir: Path) -> dict[str, Path]:
    root = data_dir / "blobs"
    return {
        str(path.relative_to(root)).removesuffix(BLOB_SUFFIX): path
        for path in root.rglob(f"*{BLOB_SUFFIX}")
    }


async def _index_rows(data_dir: Path) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(f"postgresql://postgres@/skypacs?host={data_dir / 'postgres'}")
    try:
        return list(await conn.fetch("SELECT sop_instance_uid, status, blob_key FROM instances"))
    finally:
        await conn.close()


async def _wait_for_claim(data_dir: Path) -> None:
    """Return once the server holds a ``creating`` claim (the upload is mid-store)."""
    async with asyncio.timeout(120):
        while True:
            rows = await _index_rows(data_dir)
            if any(r["status"] == "creating" for r in rows):
                return
            await asyncio.sleep(0.05)


async def _upload_until_killed(server: ServerProcess, files: list[tuple[str, bytes]]) -> Uploader:
    uploader = Uploader(f"{server.dicomweb}/studies", files)
    thread = threading.Thread(target=uploader.run, daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(uploader.in_flight.wait, 300)
        assert not uploader.done.is_set(), "uploads ended before the kill point"
        await _wait_for_claim(server.data_dir)
    finally:
        server.stop(signal.SIGKILL)
        uploader.killed.set()
    await asyncio.to_thread(thread.join, 60)
    assert uploader.done.is_set()
    return uploader


async def test_acknowledged_instances_survive_sigkill(data_dir: Path) -> None:
    _study, instances = synthesize_study(TOTAL)
    files = [(str(ds.SOPInstanceUID), part10(ds)) for ds in instances]
    by_uid = dict(files)

    uploader = await _upload_until_killed(start_server(data_dir), files)
    acknowledged = list(uploader.acknowledged)
    assert len(acknowledged) == KILL_AFTER

    restarted = start_server(data_dir)
    try:
        left = [r for r in await _index_rows(data_dir) if r["status"] == "creating"]
        _sweep(data_dir)
        rows = await _index_rows(data_dir)
    finally:
        assert restarted.stop() == 0
    assert len(left) == 1, "the kill should have interrupted exactly one claimed upload"
    stored = {r["sop_instance_uid"]: r["blob_key"] for r in rows if r["status"] == "stored"}
    assert [r for r in rows if r["status"] != "stored"] == []
    assert set(acknowledged) <= set(stored)
    blobs = _blob_files(data_dir)
    assert set(blobs) == set(stored.values())
    for uid in stored:
        assert blobs[stored[uid]].read_bytes() == as_stored(by_uid[uid])
