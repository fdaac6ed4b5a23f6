"""Where events go: the publisher protocol and the in-process bus.

The outbox relay hands each batch of the change feed to an :class:`EventPublisher`
and advances its cursor only when ``publish`` returns, so a publisher must raise
when it could not deliver the whole batch (delivery is then retried, at least once).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from .model import Event, resolve_type

log = logging.getLogger(__name__)

EventHandler = Callable[[Event], Awaitable[None]]
ALL_TYPES = "*"


class EventPublisher(Protocol):
    """A destination for events taken from the change feed."""

    async def publish(self, events: Sequence[Event]) -> None:
        """Deliver ``events`` in order; raise unless every one was accepted."""
        ...

    async def ping(self) -> None:
        """Raise :class:`skypacs.errors.DependencyUnavailable` if unreachable."""
        ...

    async def aclose(self) -> None:
        """Release connections; the publisher is not used afterwards."""
        ...


class InProcessBus:
    """Dispatches events to async handlers in this process, in feed order.

    Handlers subscribe to one event type (full type or short alias) or to ``"*"``.
    A failing handler is logged and skipped: it never stops other handlers, later
    events or the relay. Handlers must tolerate seeing an event again after a
    restart, since the relay delivers at least once.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[EventHandler]] = {}

    def subscribe(self, event_type: str, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler`` for each event of ``event_type``; returns an unsubscribe."""
        key = event_type if event_type == ALL_TYPES else resolve_type(event_type)
        self._handlers.setdefault(key, []).append(handler)

        def unsubscribe() -> None:
            handlers = self._handlers.get(key, [])
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe

    def handlers_for(self, event_type: str) -> list[EventHandler]:
        """The handlers an event of ``event_type`` goes to, in subscription order."""
        return [*self._handlers.get(event_type, ()), *self._handlers.get(ALL_TYPES, ())]

    async def publish(self, events: Sequence[Event]) -> None:
        for event in events:
            for handler in self.handlers_for(event.type):
                await self._dispatch(handler, event)

    async def _dispatch(self, handler: EventHandler, event: Event) -> None:
        try:
            await handler(event)
        except Exception as exc:
            log.error(
                "event handler %s failed on event %s (%s): %s",
                getattr(handler, "__qualname__", type(handler).__name__),
                event.id,
                event.type,
                type(exc).__name__,
            )

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._handlers.clear()
