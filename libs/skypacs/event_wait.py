"""Waiting for an :class:`asyncio.Event` with a time limit, cancellation intact.

``asyncio.wait_for(event.wait(), timeout)`` runs the wait in a task of its own,
and on Python 3.11 a cancellation that arrives as that timeout fires can be
lost: the caller gets ``TimeoutError`` (or the result) instead of
``CancelledError``. A background loop that idles this way then survives its
own cancellation and whoever awaits it on shutdown waits forever.
:func:`wait_event` waits in the caller's task under :func:`asyncio.timeout`,
which tells its own expiry apart from a cancellation from outside.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True if it was set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
