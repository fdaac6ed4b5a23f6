"""What the thumbnail cache keys on: a series' primary key and last change.

``series.updated_at`` moves whenever an instance of the series is stored,
replaced or deleted (see :mod:`skypacs.index.aggregates`), so a cached image
keyed by it is never served after the series changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .outbox import Executor


@dataclass(frozen=True, slots=True)
class SeriesStamp:
    """A series' primary key and the time of its last change."""

    series_pk: int
    updated_at: datetime

    @property
    def token(self) -> str:
        """The change time as microseconds since the epoch (a blob key segment)."""
        return str(int(self.updated_at.timestamp() * 1_000_000))


async def series_stamp(executor: Executor, study_uid: str, series_uid: str) -> SeriesStamp | None:
    """The stamp of ``series_uid`` of ``study_uid``, None when unknown."""
    row = await executor.fetchrow(
        """SELECT s.id, s.updated_at FROM series s JOIN studies st ON st.id = s.study_pk
           WHERE s.series_uid = $2 AND st.study_uid = $1""",
        study_uid,
        series_uid,
    )
    if row is None:
        return None
    return SeriesStamp(int(row["id"]), row["updated_at"])
