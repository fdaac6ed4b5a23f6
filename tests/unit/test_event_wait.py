"""Waiting for an event with a time limit: set, timed out or cancelled."""

from __future__ import annotations

import asyncio

import pytest

from skypacs.event_wait import wait_event

pytestmark = pytest.mark.unit


async def test_tells_a_set_event_from_a_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


async def test_a_cancelled_wait_is_cancelled_not_timed_out() -> None:
    event = asyncio.Event()
    task = asyncio.ensure_future(wait_event(event, 60))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
