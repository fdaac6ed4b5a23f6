"""Administration of API keys and reading of the audit trail (``skypacs`` commands)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import orjson

from skypacs.config import Settings
from skypacs.index import open_index
from skypacs.index.api_keys import ApiKeyRow, list_api_keys, revoke_api_key
from skypacs.index.audit_log import AuditFilter, AuditRow, select_audit_rows

from .api_keys import create_api_key

if TYPE_CHECKING:
    from skypacs.index.pool import Connection

__all__ = ["audit_lines", "create_key", "key_table", "revoke_key"]


@asynccontextmanager
async def _connection(settings: Settings) -> AsyncIterator[Connection]:
    async with open_index(settings, migrate=False) as index, index.pool.acquire() as conn:
        yield conn


async def create_key(settings: Settings, *, name: str, role: str) -> tuple[str, ApiKeyRow]:
    """Create a key; the clear key is returned once and never stored."""
    async with _connection(settings) as conn:
        return await create_api_key(conn, name=name, role=role)


def _key_line(row: ApiKeyRow) -> str:
    state = "active" if row.active else f"revoked {row.revoked_at:%Y-%m-%dT%H:%M:%SZ}"
    return f"{row.key_id}  {row.role:<6}  {row.created_at:%Y-%m-%dT%H:%M:%SZ}  {state}  {row.name}"


async def key_table(settings: Settings, *, include_revoked: bool) -> list[str]:
    """One line per key: id, role, creation time, state, name (never a secret)."""
    async with _connection(settings) as conn:
        rows = await list_api_keys(conn, include_revoked=include_revoked)
    if not rows:
        return ["no API keys"]
    return ["KEY ID        ROLE    CREATED               STATE  NAME", *map(_key_line, rows)]


async def revoke_key(settings: Settings, name_or_id: str) -> list[ApiKeyRow]:
    """Revoke the live key with this name or id; effective on the next request."""
    async with _connection(settings) as conn:
        return await revoke_api_key(conn, name_or_id)


def _audit_line(row: AuditRow) -> str:
    uids = "/".join(uid for uid in (row.study_uid, row.series_uid, row.sop_instance_uid) if uid)
    return (
        f"{row.occurred_at:%Y-%m-%dT%H:%M:%S.%fZ}  {row.subject}  {row.role or '-'}  "
        f"{row.action}  {row.outcome} {row.status}  {row.client_address or '-'}  "
        f"{row.route}  {uids or '-'}"
    )


async def audit_lines(settings: Settings, flt: AuditFilter, *, as_json: bool) -> list[str]:
    """The matching audit records, newest first, as text or JSON lines."""
    async with _connection(settings) as conn:
        rows = await select_audit_rows(conn, flt)
    if as_json:
        return [orjson.dumps(row, option=orjson.OPT_UTC_Z).decode() for row in rows]
    return [_audit_line(row) for row in rows] or ["no audit records"]
