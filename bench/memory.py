"""Peak memory of a server under test, per phase, sampled with psutil.

The figure is the PSS (proportional set size) of the server process plus that
of its helpers: SkyPACS's worker processes and its embedded Postgres. PSS shares
each shared page among the processes mapping it, so the code the workers share
with the supervisor they were forked from, and Postgres's shared buffers, are
counted once rather than once per process. For a single-process server such as
Orthanc it is its RSS less its share of libraries other processes also map.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psutil

from .servers import RunningServer
from .stats import megabytes

SAMPLE_INTERVAL_S = 0.25


@dataclass
class MemoryPeak:
    server_pss: int = 0
    helpers_pss: int = 0
    total: int = 0

    def update(self, server_pss: int, helpers_pss: int) -> None:
        self.server_pss = max(self.server_pss, server_pss)
        self.helpers_pss = max(self.helpers_pss, helpers_pss)
        self.total = max(self.total, server_pss + helpers_pss)

    def as_megabytes(self) -> dict[str, float]:
        return {
            "server_pss_mb": round(megabytes(self.server_pss), 1),
            "helpers_pss_mb": round(megabytes(self.helpers_pss), 1),
            "total_mb": round(megabytes(self.total), 1),
        }


def _pss(pid: int) -> int:
    try:
        info = psutil.Process(pid).memory_full_info()
    except psutil.Error:
        return 0
    return int(getattr(info, "pss", info.rss))


@dataclass
class MemorySampler:
    """Samples in the background; ``phase(name)`` attributes samples to a phase."""

    server: RunningServer
    peaks: dict[str, MemoryPeak] = field(default_factory=dict)
    current: str | None = None

    def sample(self) -> tuple[int, int]:
        helpers = sum(_pss(pid) for pid in self.server.helper_pids())
        return _pss(self.server.main_pid), helpers

    async def _loop(self) -> None:
        while True:
            server, helpers = await asyncio.to_thread(self.sample)
            if self.current is not None:
                self.peaks.setdefault(self.current, MemoryPeak()).update(server, helpers)
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    async def _record(self, name: str) -> None:
        server, helpers = await asyncio.to_thread(self.sample)
        self.peaks.setdefault(name, MemoryPeak()).update(server, helpers)

    @contextlib.asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        """Attribute samples to ``name``; also sample at entry and exit for short phases."""
        await self._record(name)
        self.current = name
        try:
            yield
        finally:
            self.current = None
            await self._record(name)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
