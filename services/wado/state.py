"""Per-app WADO helpers: the transcoding pool, access recording, background cleanup.

One :class:`WadoState` lives on ``app.state`` for the app's lifetime, created on
the first request that needs it. Transcoding runs in threads bounded by a
semaphore (``SKYPACS_WADO__TRANSCODE_WORKERS``); study accesses are collected in a
set and written with one UPDATE per flush interval; blob removals after a
DELETE run as tracked tasks. When the app stops, pending accesses are written at
once and the tasks are waited for before the runtime closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar, cast

from fastapi import Request

from skypacs.config import Settings
from skypacs.event_wait import wait_event
from skypacs.http import get_runtime, on_shutdown
from skypacs.index import retrieve as index_retrieve
from skypacs.runtime import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")
_STATE_ATTR = "wado_state"


class AccessRecorder:
    """Batches "this study was read" into one UPDATE every few seconds."""

    def __init__(self, interval_s: float, spawn: Callable[[Coroutine[Any, Any, None]], None]):
        self._interval_s = interval_s
        self._spawn = spawn
        self._pending: set[int] = set()
        self._scheduled = False
        self._now = asyncio.Event()

    def record(self, runtime: Runtime, study_pks: Iterable[int]) -> None:
        """Remember accesses; a flush is scheduled if none is pending."""
        self._pending.update(study_pks)
        if self._pending and not self._scheduled:
            self._scheduled = True
            self._spawn(self._flush_later(runtime))

    async def _flush_later(self, runtime: Runtime) -> None:
        try:
            await wait_event(self._now, self._interval_s)
        finally:
            self._scheduled = False
        await self.flush(runtime)

    def flush_soon(self) -> None:
        """Make a scheduled flush, and any later one, happen without waiting."""
        self._now.set()

    async def flush(self, runtime: Runtime) -> None:
        """Write the pending accesses now (failures are logged, the batch dropped)."""
        batch, self._pending = sorted(self._pending), set()
        if not batch:
            return
        try:
            await index_retrieve.touch_studies(runtime.index.pool, batch)
        except Exception as exc:
            log.warning("access times not recorded: %s", type(exc).__name__)


class WadoState:
    """What the WADO endpoints of one app share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._workers = asyncio.Semaphore(settings.wado.transcode_workers)
        self._tasks: set[asyncio.Task[None]] = set()
        self.access = AccessRecorder(settings.wado.access_flush_interval_s, self.spawn)

    async def run_blocking(self, func: Callable[..., T], *args: Any) -> T:
        """Run CPU-bound ``func(*args)`` in a thread, at most N at a time."""
        async with self._workers:
            return await asyncio.to_thread(func, *args)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, keeping a reference until it finishes."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task failed: %s", type(task.exception()).__name__)

    async def drain(self) -> None:
        """Wait for the background tasks running now (tests, orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """At shutdown: write pending accesses now and finish background work."""
        self.access.flush_soon()
        await self.drain()


def wado_state(request: Request) -> WadoState:
    """The app's :class:`WadoState`, created on first use."""
    state = getattr(request.app.state, _STATE_ATTR, None)
    if state is None:
        state = WadoState(get_runtime(request).settings)
        setattr(request.app.state, _STATE_ATTR, state)
        on_shutdown(request.app, state.close)
    return cast(WadoState, state)
