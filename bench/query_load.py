"""Latency phases: QIDO-RS searches and WADO-RS series metadata, p50/p95 over repeats."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from .figures import Figure, Metric
from .load import DICOM_JSON, LoadContext, Phase, timed_get
from .stats import percentile

MILLISECONDS = 1000.0
DATE_RANGE = ("20200101", "20201231")
DATE_LIMIT = 100


def latency_metrics(phase: str) -> tuple[Metric, Metric]:
    return (
        Metric(phase, "p50", "ms", higher_is_better=False),
        Metric(phase, "p95", "ms", higher_is_better=False),
    )


@dataclass(frozen=True)
class Target:
    """One request repeated for latency, and how many JSON items a right answer holds."""

    url: str
    expected_items: int | None


async def measure_latency(ctx: LoadContext, phase: Phase, target: Target) -> list[Figure]:
    """One warm-up request (checked), then ``repeat`` timed sequential requests."""
    p50, p95 = phase.metrics
    first = await timed_get(ctx.client, target.url, DICOM_JSON)
    if first.status != 200:
        return phase.unavailable(f"n/a ({first.status})")
    note = check_items(first.body, target.expected_items)
    samples: list[float] = []
    for _ in range(ctx.options.repeat):
        reply = await timed_get(ctx.client, target.url, DICOM_JSON)
        if reply.status != 200:
            return phase.unavailable(f"failed ({reply.status})")
        samples.append(reply.seconds * MILLISECONDS)
    detail = {"samples": len(samples), "response_bytes": first.size}
    return [
        Figure(p50, percentile(samples, 0.50), note, detail),
        Figure(p95, percentile(samples, 0.95), note, detail),
    ]


def check_items(body: bytes, expected: int | None) -> str:
    """A note when the answer is not the JSON array of the expected length."""
    if expected is None:
        return ""
    try:
        items = json.loads(body)
    except ValueError:
        return "answer is not JSON"
    count = len(items) if isinstance(items, list) else -1
    return "" if count == expected else f"wrong answer: {count} item(s), want {expected}"


def latency_phase(name: str, target: Callable[[LoadContext], Target]) -> Phase:
    async def run(ctx: LoadContext) -> list[Figure]:
        return await measure_latency(ctx, phase, target(ctx))

    phase = Phase(name, latency_metrics(name), run)
    return phase


#: Wildcards and PN separators go unescaped: Orthanc 1.10 does not percent-decode
#: QIDO values, so ``%2A`` would match a literal asterisk there.
UNESCAPED = "*^-"


def _studies(ctx: LoadContext, **query: str | int) -> str:
    return f"{ctx.dicomweb}/studies?{urlencode(query, safe=UNESCAPED)}"


def by_patient_id(ctx: LoadContext) -> Target:
    return Target(_studies(ctx, PatientID=ctx.study.patient_id), 1)


def name_prefix(ctx: LoadContext) -> str:
    """The family-name prefix shared by up to ten studies (``BENCH000*``)."""
    return ctx.study.patient_name[:8] + "*"


def by_name_prefix(ctx: LoadContext) -> Target:
    pattern = name_prefix(ctx)
    expected = ctx.corpus.studies_matching_name(pattern)
    return Target(_studies(ctx, PatientName=pattern), expected)


def by_date_range(ctx: LoadContext) -> Target:
    first, last = DATE_RANGE
    expected = min(DATE_LIMIT, ctx.corpus.studies_in_date_range(first, last))
    return Target(_studies(ctx, StudyDate=f"{first}-{last}", limit=DATE_LIMIT), expected)


def series_in_study(ctx: LoadContext) -> Target:
    url = f"{ctx.dicomweb}/studies/{ctx.study.study_uid}/series"
    return Target(url, len(ctx.study.series))


def series_metadata(ctx: LoadContext) -> Target:
    return Target(f"{ctx.series_url()}/metadata", len(ctx.series.instances))


QIDO_PHASES = (
    latency_phase("QIDO studies by PatientID", by_patient_id),
    latency_phase("QIDO studies by PatientName prefix", by_name_prefix),
    latency_phase("QIDO studies by StudyDate range, limit 100", by_date_range),
    latency_phase("QIDO series in study", series_in_study),
)
METADATA_PHASE = latency_phase("WADO series metadata", series_metadata)
