"""SQL for API keys: create, find by key id, list, revoke."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from skypacs.errors import Conflict

if TYPE_CHECKING:
    from .pool import Connection

__all__ = ["ApiKeyRow", "find_api_key", "insert_api_key", "list_api_keys", "revoke_api_key"]

_COLUMNS = "key_id, name, role, secret_sha256, created_at, revoked_at"


@dataclass(frozen=True)
class ApiKeyRow:
    """One stored key (the secret only as its hash)."""

    key_id: str
    name: str
    role: str
    secret_sha256: bytes
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _row(record: asyncpg.Record) -> ApiKeyRow:
    return ApiKeyRow(
        key_id=record["key_id"],
        name=record["name"],
        role=record["role"],
        secret_sha256=bytes(record["secret_sha256"]),
        created_at=record["created_at"],
        revoked_at=record["revoked_at"],
    )


async def insert_api_key(
    conn: Connection, *, key_id: str, name: str, role: str, secret_sha256: bytes
) -> ApiKeyRow:
    """Store a new key; a live key of the same name is a :class:`Conflict`."""
    try:
        record = await conn.fetchrow(
            f"INSERT INTO api_keys (key_id, name, role, secret_sha256) VALUES ($1, $2, $3, $4) "
            f"RETURNING {_COLUMNS}",
            key_id,
            name,
            role,
            secret_sha256,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"an active API key named {name!r} exists; revoke it first") from None
    assert record is not None
    return _row(record)


async def find_api_key(conn: Connection, key_id: str) -> ApiKeyRow | None:
    """The key with this public id, revoked or not."""
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = $1", key_id)
    return None if record is None else _row(record)


async def list_api_keys(conn: Connection, *, include_revoked: bool = False) -> list[ApiKeyRow]:
    """Every key, oldest first."""
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    records = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys {where} ORDER BY id")
    return [_row(r) for r in records]


async def revoke_api_key(conn: Connection, name_or_id: str) -> list[ApiKeyRow]:
    """Revoke the live key with this name or key id; return what was revoked."""
    records = await conn.fetch(
        f"UPDATE api_keys SET revoked_at = now() "
        f"WHERE revoked_at IS NULL AND (name = $1 OR key_id = $1) RETURNING {_COLUMNS}",
        name_or_id,
    )
    return [_row(r) for r in records]
