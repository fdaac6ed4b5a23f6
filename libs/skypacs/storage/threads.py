"""Blocking file calls run off the event loop, one at a time per resource."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ThreadLane:
    """Runs blocking calls for one file descriptor in worker threads, in sequence.

    A cancelled caller does not stop a call already running in its thread, so
    :meth:`settle` waits for it before the descriptor is closed; otherwise a
    late write could land on a recycled descriptor number.
    """

    def __init__(self) -> None:
        self._last: asyncio.Future[Any] | None = None

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in the loop's default executor, as ``asyncio.to_thread``
        runs it (same context variables) but with no task around it."""
        await self.settle()
        call = functools.partial(contextvars.copy_context().run, func, *args)
        future: asyncio.Future[T] = asyncio.get_running_loop().run_in_executor(None, call)
        self._last = future
        return await asyncio.shield(future)

    async def settle(self) -> None:
        future = self._last
        if future is None:
            return
        if not future.done():
            await asyncio.wait([future])
        if not future.cancelled():
            future.exception()
