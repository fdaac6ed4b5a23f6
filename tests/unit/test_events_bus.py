"""The in-process bus: delivery by type, order, and handler isolation."""

from __future__ import annotations

import logging

import pytest

from skypacs.events import Event, EventType, InProcessBus, new_event

pytestmark = pytest.mark.unit


def make(kind: EventType, n: int) -> Event:
    return new_event(kind, partition_key="1.2.3", subject=None, data={"n": n}, source="test")


async def test_handlers_get_their_types_in_order_and_star_gets_all() -> None:
    bus = InProcessBus()
    stored: list[int] = []
    everything: list[str] = []

    async def on_stored(event: Event) -> None:
        stored.append(event.data["n"])

    async def on_any(event: Event) -> None:
        everything.append(EventType(event.type).alias)

    bus.subscribe("instance.stored", on_stored)
    bus.subscribe("*", on_any)
    await bus.publish(
        [
            make(EventType.INSTANCE_STORED, 1),
            make(EventType.STUDY_COMPLETED, 2),
            make(EventType.INSTANCE_STORED, 3),
        ]
    )
    assert stored == [1, 3]
    assert everything == ["instance.stored", "study.completed", "instance.stored"]


async def test_a_failing_handler_does_not_stop_others_or_later_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = InProcessBus()
    seen: list[int] = []

    async def explode(event: Event) -> None:
        if event.data["n"] == 1:
            raise RuntimeError("patient Smith broke it")

    async def record(event: Event) -> None:
        seen.append(event.data["n"])

    bus.subscribe(EventType.INSTANCE_STORED, explode)
    bus.subscribe(EventType.INSTANCE_STORED, record)
    with caplog.at_level(logging.ERROR, logger="skypacs.events.bus"):
        await bus.publish([make(EventType.INSTANCE_STORED, n) for n in (1, 2)])
    assert seen == [1, 2]
    assert "RuntimeError" in caplog.text
    assert "Smith" not in caplog.text


async def test_unsubscribed_handlers_receive_nothing_more() -> None:
    bus = InProcessBus()
    seen: list[int] = []

    async def record(event: Event) -> None:
        seen.append(event.data["n"])

    unsubscribe = bus.subscribe("tier.changed", record)
    await bus.publish([make(EventType.TIER_CHANGED, 1)])
    unsubscribe()
    await bus.publish([make(EventType.TIER_CHANGED, 2)])
    assert seen == [1]
    await bus.ping()
