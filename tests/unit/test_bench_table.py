"""The benchmark table: one row per metric, a column per server, readable cells."""

from __future__ import annotations

import pytest
from bench.figures import Figure, Metric
from bench.table import (
    COLUMNS,
    NOT_RUN,
    ORTHANC,
    SKYPACS_FS,
    SKYPACS_S3,
    footnotes,
    format_value,
    render,
    table_rows,
)

pytestmark = pytest.mark.unit

INGEST = Metric("STOW ingest", "MB/s", "MB/s", higher_is_better=True)
P50 = Metric("QIDO series in study", "p50", "ms", higher_is_better=False)


def sample_results() -> dict[str, list[Figure]]:
    return {
        SKYPACS_FS: [Figure(INGEST, 150.0), Figure.missing(P50, "n/a (501)")],
        SKYPACS_S3: [Figure(INGEST, 90.5)],
        ORTHANC: [Figure(INGEST, 100.0), Figure(P50, 2.5, "wrong answer: 0 item(s), want 1")],
    }


def test_rows_hold_each_server_and_the_ratio() -> None:
    header, ingest, latency = table_rows(sample_results())
    assert header == ["phase", "metric", *COLUMNS, "ratio"]
    assert ingest == ["STOW ingest", "MB/s", "150", "90.5", "100", "1.50x"]
    assert latency == ["QIDO series in study", "p50 (ms)", "n/a (501)", NOT_RUN, "2.50 (!)", "-"]


def test_a_server_that_did_not_run_shows_as_not_run() -> None:
    results = {SKYPACS_FS: [Figure(INGEST, 10.0)]}
    assert table_rows(results)[1] == ["STOW ingest", "MB/s", "10.0", NOT_RUN, NOT_RUN, "-"]


def test_render_aligns_columns() -> None:
    lines = render(table_rows(sample_results())).splitlines()
    assert len(lines) == 4
    assert len({line.index("|") for line in lines if "|" in line}) == 1
    assert set(lines[1]) <= {"-", "+"}
    assert lines[2].split("|")[-1].strip() == "1.50x"


def test_footnotes_explain_flagged_cells_once() -> None:
    results = sample_results()
    results[ORTHANC].append(Figure(P50, 3.0, "wrong answer: 0 item(s), want 1"))
    assert footnotes(results) == [
        "(!) Orthanc, QIDO series in study: wrong answer: 0 item(s), want 1"
    ]


@pytest.mark.parametrize(
    ("value", "text"), [(1234.4, "1,234"), (123.4, "123"), (12.34, "12.3"), (1.234, "1.23")]
)
def test_values_keep_about_three_significant_digits(value: float, text: str) -> None:
    assert format_value(value) == text
