"""The one results table: a row per metric, a column per server, and the ratio."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .figures import Figure, Metric, oriented_ratio

SKYPACS_FS = "SkyPACS-fs"
SKYPACS_S3 = "SkyPACS-s3"
ORTHANC = "Orthanc"
COLUMNS = (SKYPACS_FS, SKYPACS_S3, ORTHANC)
NOT_RUN = "not run"
HEADER_NOTE = (
    "ratio = SkyPACS-fs against Orthanc, oriented so that > 1 means SkyPACS is better "
    "(throughput: fs/Orthanc; latency and memory: Orthanc/fs)\n"
    "peak memory = PSS of the server process, its worker processes and the "
    "embedded Postgres (summed: shared pages counted once); "
    "(!) = answered, but see the note below the table"
)


def format_value(value: float) -> str:
    """Three significant digits or so, without scientific notation."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_cell(figure: Figure | None) -> str:
    if figure is None:
        return NOT_RUN
    if figure.value is None:
        return figure.note or "n/a"
    text = format_value(figure.value)
    return f"{text} (!)" if figure.note else text


def format_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def ordered_metrics(results: Mapping[str, Sequence[Figure]]) -> list[Metric]:
    """Every metric in the order it first appears across servers."""
    seen: dict[tuple[str, str], Metric] = {}
    for figures in results.values():
        for figure in figures:
            seen.setdefault(figure.metric.key, figure.metric)
    return list(seen.values())


def table_rows(results: Mapping[str, Sequence[Figure]]) -> list[list[str]]:
    """Header plus one row per metric: phase, metric, one cell per server, ratio."""
    index = {
        label: {figure.metric.key: figure for figure in figures}
        for label, figures in results.items()
    }
    rows = [["phase", "metric", *COLUMNS, "ratio"]]
    for metric in ordered_metrics(results):
        cells = [format_cell(index.get(label, {}).get(metric.key)) for label in COLUMNS]
        fs = index.get(SKYPACS_FS, {}).get(metric.key)
        orthanc = index.get(ORTHANC, {}).get(metric.key)
        name = f"{metric.name} ({metric.unit})" if metric.unit != metric.name else metric.name
        rows.append([metric.phase, name, *cells, format_ratio(oriented_ratio(fs, orthanc))])
    return rows


def render(rows: Sequence[Sequence[str]]) -> str:
    """Aligned plain-text columns separated by ``|``, numbers right-aligned."""
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.ljust(width) if col < 2 else cell.rjust(width)
            for col, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" | ".join(cells).rstrip())
        if number == 0:
            lines.append("-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def footnotes(results: Mapping[str, Sequence[Figure]]) -> list[str]:
    """Why a cell carries ``(!)``: the note of every figure that has a value and a note."""
    notes: dict[str, None] = {}
    for label, figures in results.items():
        for figure in figures:
            if figure.value is not None and figure.note:
                notes[f"(!) {label}, {figure.metric.phase}: {figure.note}"] = None
    return list(notes)
