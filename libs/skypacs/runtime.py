"""The open backends of one SkyPACS process: index, blob store and events.

:func:`open_runtime` opens them in dependency order (the event relay reads the
index outbox) and closes them in reverse; :func:`readiness` pings each one
concurrently, bounded by a timeout, and names what is not reachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from skypacs.config import Settings
from skypacs.errors import DependencyUnavailable
from skypacs.events import Events, open_events
from skypacs.index import Index, open_index
from skypacs.storage import BlobStore, open_blob_store

__all__ = ["Pingable", "Runtime", "open_runtime", "open_service_runtime", "readiness"]

READY = "ok"
DEFAULT_PING_TIMEOUT_S = 2.0


class Pingable(Protocol):
    """Anything a readiness probe can check."""

    async def ping(self) -> None: ...


@dataclass(frozen=True)
class Runtime:
    """The backends a service works with, open for the life of the process."""

    settings: Settings
    index: Index
    blobs: BlobStore
    events: Events

    def dependencies(self) -> Mapping[str, Pingable]:
        """Each backend under the name readiness reports it by."""
        return {"index": self.index, "blobs": self.blobs, "events": self.events}


@asynccontextmanager
async def open_runtime(settings: Settings, *, migrate: bool, relay: bool) -> AsyncIterator[Runtime]:
    """Open index, blob store and events (in that order); close them in reverse.

    ``migrate`` brings the index schema up to date first; ``relay`` runs the
    outbox relay in the background while the runtime is open.
    """
    async with AsyncExitStack() as stack:
        index = await stack.enter_async_context(open_index(settings, migrate=migrate))
        blobs = await stack.enter_async_context(open_blob_store(settings))
        events = await stack.enter_async_context(open_events(settings, index, relay=relay))
        yield Runtime(settings=settings, index=index, blobs=blobs, events=events)


def open_service_runtime(settings: Settings) -> AbstractAsyncContextManager[Runtime]:
    """Backends for one standalone service process (``skypacs stow|qido|wado``).

    The schema is migrated only when ``SKYPACS_INDEX__MIGRATE_ON_START`` says so
    (otherwise ``skypacs migrate`` does it); the outbox relay runs elsewhere.
    """
    return open_runtime(settings, migrate=settings.index.migrate_on_start, relay=False)


async def _probe(target: Pingable, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            await target.ping()
    except TimeoutError:
        return f"unavailable: no answer within {timeout_s:g} s"
    except DependencyUnavailable as exc:
        return f"unavailable: {exc.detail}"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return READY


async def check_dependencies(
    dependencies: Mapping[str, Pingable], *, timeout_s: float = DEFAULT_PING_TIMEOUT_S
) -> tuple[bool, dict[str, str]]:
    """Ping every dependency concurrently; ``(all ok, {name: state})``."""
    names = list(dependencies)
    states = await asyncio.gather(*(_probe(dependencies[n], timeout_s) for n in names))
    report = dict(zip(names, states, strict=True))
    return all(state == READY for state in states), report


async def readiness(
    runtime: Runtime, *, timeout_s: float = DEFAULT_PING_TIMEOUT_S
) -> tuple[bool, dict[str, str]]:
    """Whether every backend of ``runtime`` answers, and the state of each."""
    return await check_dependencies(runtime.dependencies(), timeout_s=timeout_s)
