"""Scratch databases for QIDO tests, and the synthetic study-list index in one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from bench.qido_scale import bulk_load

from skypacs.index.pool import init_connection
from tests.fixtures.postgres import with_database


@asynccontextmanager
async def scratch_database(server_dsn: str, template: str) -> AsyncIterator[str]:
    """A database cloned from the migrated template, dropped afterwards."""
    name = f"qido_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    try:
        yield with_database(server_dsn, name)
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def synthetic_index(
    server_dsn: str, template: str, instances: int
) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection to a scratch database holding ``instances`` synthetic instances."""
    async with scratch_database(server_dsn, template) as dsn:
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        try:
            await bulk_load(conn, instances)
            yield conn
        finally:
            await conn.close()
