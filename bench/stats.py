"""Small, dependency-free statistics for latency samples and throughput."""

from __future__ import annotations

import math
from collections.abc import Sequence

MEGABYTE = 1_000_000


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) with linear interpolation between ranks."""
    if not samples:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be within [0, 1]")
    ordered = sorted(samples)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    weight = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * weight


def median(samples: Sequence[float]) -> float:
    """The middle value (mean of the two middle values for an even count)."""
    return percentile(samples, 0.5)


def rate(count: float, seconds: float) -> float:
    """Items per second; zero elapsed time yields zero rather than infinity."""
    return count / seconds if seconds > 0 else 0.0


def megabytes(byte_count: float) -> float:
    """Decimal megabytes (10^6 bytes), the unit every MB figure uses."""
    return byte_count / MEGABYTE
