"""SQL for the append-only audit trail: batched inserts and filtered reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pool import Connection

__all__ = ["AUDIT_COLUMNS", "AuditFilter", "AuditRow", "insert_audit_rows", "select_audit_rows"]


@dataclass(frozen=True)
class AuditRow:
    """One audit record as stored (column for column)."""

    occurred_at: datetime
    request_id: str | None
    subject: str
    key_name: str | None
    auth_method: str
    role: str | None
    action: str
    method: str
    route: str
    study_uid: str | None
    series_uid: str | None
    sop_instance_uid: str | None
    query: str | None
    client_address: str | None
    status: int
    outcome: str


AUDIT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AuditRow))


@dataclass(frozen=True)
class AuditFilter:
    """What ``skypacs audit`` narrows the trail to (every field optional)."""

    subject: str | None = None
    study_uid: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


async def insert_audit_rows(conn: Connection, rows: Sequence[AuditRow]) -> None:
    """Append ``rows`` in one round trip (COPY)."""
    records = [tuple(getattr(row, name) for name in AUDIT_COLUMNS) for row in rows]
    await conn.copy_records_to_table("audit_log", records=records, columns=list(AUDIT_COLUMNS))


def _where(flt: AuditFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, op, value in (
        ("subject", "=", flt.subject),
        ("study_uid", "=", flt.study_uid),
        ("action", "=", flt.action),
        ("occurred_at", ">=", flt.since),
        ("occurred_at", "<", flt.until),
    ):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} {op} ${len(args)}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def select_audit_rows(conn: Connection, flt: AuditFilter) -> list[AuditRow]:
    """The newest ``flt.limit`` matching records, newest first."""
    where, args = _where(flt)
    args.append(flt.limit)
    records = await conn.fetch(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log{where} "
        f"ORDER BY occurred_at DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    return [AuditRow(**dict(r)) for r in records]
