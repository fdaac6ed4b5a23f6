"""One measured figure per phase, metric and server, and the ratio between servers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Metric:
    """What a row of the table measures and which direction is better."""

    phase: str
    name: str
    unit: str
    higher_is_better: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.phase, self.name)


@dataclass(frozen=True)
class Figure:
    """A measured value, or the reason there is none (``value`` is None then)."""

    metric: Metric
    value: float | None
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def missing(cls, metric: Metric, reason: str) -> Figure:
        return cls(metric, None, reason)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["metric"] = asdict(self.metric)
        return data


def oriented_ratio(candidate: Figure | None, reference: Figure | None) -> float | None:
    """``candidate`` against ``reference``, oriented so that > 1 means candidate is better."""
    if candidate is None or reference is None:
        return None
    if candidate.value is None or reference.value is None:
        return None
    if candidate.value <= 0 or reference.value <= 0:
        return None
    if candidate.metric.higher_is_better:
        return candidate.value / reference.value
    return reference.value / candidate.value
