"""Grouping a retrieve's instances and handing their bodies out in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from skypacs.services.wado.read_ahead import (
    FIRST_GROUP,
    MAX_GROUP,
    Group,
    bodies_ahead,
    plan_groups,
)
from skypacs.storage import BlobReader

pytestmark = pytest.mark.unit

MB = 1024 * 1024


def test_the_first_group_is_small_then_streamed_rows_share_groups() -> None:
    count = FIRST_GROUP + 5
    groups = plan_groups([MB] * count, [True] * count, budget=64 * MB)
    assert groups == [Group(0, FIRST_GROUP, True), Group(FIRST_GROUP, count, True)]


def test_groups_respect_the_budget_and_the_count() -> None:
    assert plan_groups([MB] * 6, [True] * 6, budget=2 * MB) == [
        Group(0, 2, True),
        Group(2, 4, True),
        Group(4, 6, True),
    ]
    count = FIRST_GROUP + MAX_GROUP * 2
    many = plan_groups([1] * count, [True] * count, budget=MB)
    assert [g.stop - g.start for g in many] == [FIRST_GROUP, MAX_GROUP, MAX_GROUP]
    assert plan_groups([10 * MB, MB], [True, True], budget=MB) == [
        Group(0, 1, True),
        Group(1, 2, True),
    ]


def test_converted_rows_are_groups_of_their_own() -> None:
    groups = plan_groups([1, 1, 1, 1, 1], [False, True, True, False, True], budget=MB)
    assert groups == [
        Group(0, 1, False),
        Group(1, 3, True),
        Group(3, 4, False),
        Group(4, 5, True),
    ]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _reader(name: str) -> BlobReader:
    data = name.encode()
    return BlobReader(size=len(data), start=0, end=len(data), chunks=_chunks(data))


async def test_bodies_come_in_row_order() -> None:
    names = [f"row{n}" for n in range(7)]
    groups = plan_groups([1] * 7, [True, True, True, False, True, True, True], budget=3)

    async def opener(group: Group) -> Sequence[BlobReader | bytes]:
        if not group.streamed:
            return [names[group.start].encode()]
        return [_reader(name) for name in names[group.start : group.stop]]

    seen: list[str] = []
    first = [_reader(name) for name in names[groups[0].start : groups[0].stop]]
    async for body in bodies_ahead(groups, first, opener):
        if isinstance(body, bytes):
            seen.append(body.decode())
        else:
            seen.append((await body.read_all()).decode())
    assert seen == names


async def test_bodies_not_handed_out_are_closed() -> None:
    opened: list[BlobReader] = []

    async def opener(group: Group) -> Sequence[BlobReader]:
        readers = [_reader(str(n)) for n in range(group.start, group.stop)]
        opened.extend(readers)
        return readers

    groups = plan_groups([1] * 10, [True] * 10, budget=4)
    first = await opener(groups[0])
    ahead = bodies_ahead(groups, first, opener)
    taken = [await anext(ahead), await anext(ahead)]
    await ahead.aclose()
    handed_out = {id(body) for body in taken}
    assert opened
    assert all(reader.closed for reader in opened if id(reader) not in handed_out)
