"""Benchmark statistics: percentiles, medians, rates and the oriented ratio."""

from __future__ import annotations

import pytest
from bench.figures import Figure, Metric, oriented_ratio
from bench.stats import median, megabytes, percentile, rate

pytestmark = pytest.mark.unit

THROUGHPUT = Metric("phase", "MB/s", "MB/s", higher_is_better=True)
LATENCY = Metric("phase", "p50", "ms", higher_is_better=False)


def test_percentiles_interpolate_between_ranks() -> None:
    samples = [10.0, 1.0, 4.0, 3.0, 2.0]
    assert percentile(samples, 0.0) == 1.0
    assert percentile(samples, 1.0) == 10.0
    assert percentile(samples, 0.5) == 3.0
    assert percentile(samples, 0.95) == pytest.approx(8.8)
    assert percentile([5.0], 0.95) == 5.0


def test_median_of_even_count_is_mean_of_middle_pair() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_percentile_rejects_empty_or_out_of_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="fraction"):
        percentile([1.0], 1.5)


def test_rate_and_units() -> None:
    assert rate(50, 2.0) == 25.0
    assert rate(50, 0.0) == 0.0
    assert megabytes(3_500_000) == 3.5


def test_ratio_is_oriented_so_above_one_means_skypacs_is_better() -> None:
    assert oriented_ratio(Figure(THROUGHPUT, 200.0), Figure(THROUGHPUT, 100.0)) == 2.0
    assert oriented_ratio(Figure(LATENCY, 5.0), Figure(LATENCY, 10.0)) == 2.0
    assert oriented_ratio(Figure(LATENCY, 20.0), Figure(LATENCY, 10.0)) == 0.5


def test_ratio_is_absent_without_two_values() -> None:
    assert oriented_ratio(Figure.missing(LATENCY, "n/a (501)"), Figure(LATENCY, 1.0)) is None
    assert oriented_ratio(Figure(LATENCY, 1.0), None) is None
    assert oriented_ratio(Figure(LATENCY, 0.0), Figure(LATENCY, 1.0)) is None
