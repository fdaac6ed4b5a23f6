"""Stored instances of a retrieve, opened a group at a time ahead of the sender.

Opening a blob costs a worker-thread hop on the filesystem and a round trip on
S3; paying it once per instance dominates a series of small instances. The
rows are cut into groups of consecutive instances of bounded count and total
size, each group is opened at once (one hop that also starts the kernel's
read-ahead, or concurrent requests), and the next group is opened while the
current one is sent. A group holds descriptors or response streams, not
object bytes, so memory does not grow with the study. The first group is
opened before the response starts, so a missing object still gets an error
status, and it is kept small so that the answer starts soon.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from skypacs.storage import BlobReader

#: Object bytes one group may ask the storage to read ahead.
GROUP_BYTES = 32 * 1024 * 1024
#: Descriptors or connections held by one group.
MAX_GROUP = 32
#: Rows of the first group, opened before the response starts: enough to send
#: while the next group opens, few enough to start the answer soon.
FIRST_GROUP = 8

T = TypeVar("T")


async def close_all(readers: Sequence[BlobReader]) -> None:
    for reader in readers:
        await reader.aclose()


@dataclass(frozen=True, slots=True)
class Group:
    """Consecutive rows ``[start, stop)``; ``streamed`` when sent as stored from blobs."""

    start: int
    stop: int
    streamed: bool


def plan_groups(sizes: Sequence[int], streamed: Sequence[bool], budget: int) -> list[Group]:
    """Cut rows into groups: runs of streamed rows whose sizes fit ``budget`` (a
    larger row goes alone), at most :data:`FIRST_GROUP` in the first group (it is
    opened before the response starts) and :data:`MAX_GROUP` in the others; every
    converted row is a group of its own."""
    groups: list[Group] = []
    position = 0
    while position < len(sizes):
        stop = position + 1
        if streamed[position]:
            most = FIRST_GROUP if position == 0 else MAX_GROUP
            held = sizes[position]
            while stop < len(sizes) and streamed[stop] and stop - position < most:
                held += sizes[stop]
                if held > budget:
                    break
                stop += 1
        groups.append(Group(position, stop, streamed[position]))
        position = stop
    return groups


async def bodies_ahead(
    groups: Sequence[Group], first: Sequence[T], opener: Callable[[Group], Awaitable[Sequence[T]]]
) -> AsyncGenerator[T, None]:
    """Each row's body in order: ``first`` holds the first group's bodies, ``opener``
    makes the others; the next streamed group is opened while one is consumed.

    Bodies opened but never handed out (the consumer stopped) are closed.
    """
    current: deque[T] = deque(first)
    ahead: asyncio.Task[Sequence[T]] | None = None
    try:
        for index in range(len(groups)):
            following = groups[index + 1] if index + 1 < len(groups) else None
            if following is not None and following.streamed:
                ahead = asyncio.ensure_future(opener(following))
            while current:
                yield current.popleft()
            if following is not None:
                current = deque(await ahead if ahead is not None else await opener(following))
                ahead = None
    finally:
        await _release(current)
        if ahead is not None:
            await _drop(ahead)


async def _release(bodies: Sequence[T] | deque[T]) -> None:
    await close_all([body for body in bodies if isinstance(body, BlobReader)])


async def _drop(ahead: asyncio.Task[Sequence[T]]) -> None:
    """Let an opening that is no longer wanted finish, then release what it opened."""
    await asyncio.wait([ahead])
    if not ahead.cancelled() and ahead.exception() is None:
        await _release(ahead.result())
