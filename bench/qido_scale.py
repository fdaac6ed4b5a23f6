"""QIDO-RS at scale: bulk-load a synthetic index and time the common study-list queries.

The loader writes patients, studies, series and ``stored`` instances with
``generate_series`` (ten instances per study: two series of five), in id ranges,
so the same index can be grown step by step. The measurement times each common
query (limit 100) through the QIDO-RS app at a small size and again after growing
to the large size, in the same run, and reports p95 and the ratio between them.

Run: ``python -m bench.qido_scale --small 10000 --large 1000000`` (embedded
Postgres under a temporary directory unless ``--dsn`` names a migrated database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx

from bench.figures import Figure, Metric
from bench.stats import median, percentile

INSTANCES_PER_SERIES: Final = 5
SERIES_PER_STUDY: Final = 2
INSTANCES_PER_STUDY: Final = INSTANCES_PER_SERIES * SERIES_PER_STUDY
UID_ROOT: Final = "1.2.826.0.1.3680043.10.543"

FAMILY: Final = (
    "Smith", "Müller", "Johnson", "García", "Nguyen", "Okafor", "Schmidt", "Rossi", "Dubois",
    "Kowalski", "Yamada", "Søndergaard", "Brown", "López", "Ivanov", "Öztürk", "Martin",
    "Smythe", "Andersson", "Novák",
)  # fmt: skip
GIVEN: Final = ("John", "Anna", "José", "Zoë", "Peter", "Chloé", "Ali", "Mei", "Lars", "Ines")
MODALITIES: Final = ("CT", "MR", "US", "CR", "PT", "DX", "MG", "NM")

#: The study-list queries viewers send most, as QIDO-RS parameters (limit 100).
COMMON_QUERIES: Final[dict[str, dict[str, str]]] = {
    "study list": {},
    "PatientID": {"PatientID": "PID00000777"},
    "PatientName prefix": {"PatientName": "Müller^Pet*"},
    "PatientName fuzzy": {"PatientName": "muller pet", "fuzzymatching": "true"},
    "PatientName contains": {"PatientName": "*ythe*"},
    "AccessionNumber": {"AccessionNumber": "A00000777"},
    "StudyDate range + ModalitiesInStudy": {
        "StudyDate": "20200101-20200331",
        "ModalitiesInStudy": "MR",
    },
    "StudyInstanceUID": {"StudyInstanceUID": f"{UID_ROOT}.1.777"},
}

_PATIENTS = """
INSERT INTO patients (id, patient_id, patient_name, birth_date, sex)
SELECT p, 'PID' || lpad(p::text, 8, '0'),
       ($3::text[])[1 + p % cardinality($3::text[])] || '^'
           || ($4::text[])[1 + (p / 7) % cardinality($4::text[])] || '^' || p::text,
       to_char(date '1940-01-01' + (p * 37 % 25000)::int, 'YYYYMMDD'),
       CASE WHEN p % 2 = 0 THEN 'F' ELSE 'M' END
FROM generate_series($1::bigint, $2::bigint) AS p
"""

_STUDIES = """
INSERT INTO studies (id, study_uid, patient_pk, patient_id, patient_name, patient_birth_date,
    patient_sex, study_date, study_time, accession_number, study_id, study_description,
    referring_physician_name, attrs, num_series, num_instances, modalities, sop_classes)
SELECT p.id, $3::text || '.1.' || p.id, p.id, p.patient_id, p.patient_name, p.birth_date, p.sex,
       d.study_date, d.study_time, 'A' || lpad(p.id::text, 8, '0'), p.id::text,
       'Study ' || m.modality, 'Referrer^' || (p.id % 50)::text,
       jsonb_build_object(
           '0020000D', jsonb_build_object('vr', 'UI',
                'Value', jsonb_build_array($3::text || '.1.' || p.id)),
           '00080020', jsonb_build_object('vr', 'DA', 'Value', jsonb_build_array(d.study_date)),
           '00080030', jsonb_build_object('vr', 'TM', 'Value', jsonb_build_array(d.study_time)),
           '00080050', jsonb_build_object('vr', 'SH',
                'Value', jsonb_build_array('A' || lpad(p.id::text, 8, '0'))),
           '00100010', jsonb_build_object('vr', 'PN',
                'Value', jsonb_build_array(jsonb_build_object('Alphabetic', p.patient_name))),
           '00100020', jsonb_build_object('vr', 'LO', 'Value', jsonb_build_array(p.patient_id)),
           '00081030', jsonb_build_object('vr', 'LO',
                'Value', jsonb_build_array('Study ' || m.modality))),
       $4::int, $5::int * $4::int, ARRAY[m.modality, 'SR'], ARRAY['1.2.840.10008.5.1.4.1.1.2']
FROM patients p
CROSS JOIN LATERAL (SELECT ($6::text[])[1 + p.id % cardinality($6::text[])] AS modality) m
CROSS JOIN LATERAL (SELECT to_char(date '2010-01-01' + (p.id * 7919 % 5475)::int, 'YYYYMMDD')
                        AS study_date,
                    lpad((p.id % 24)::text, 2, '0') || lpad((p.id % 60)::text, 2, '0') || '00'
                        AS study_time) d
WHERE p.id BETWEEN $1 AND $2
"""

_SERIES = """
INSERT INTO series (id, series_uid, study_pk, modality, series_number, series_description,
    series_date, series_time, attrs, num_instances)
SELECT (s.id - 1) * $3::int + n, $4::text || '.2.' || s.id || '.' || n, s.id,
       CASE WHEN n = 1 THEN s.modalities[1] ELSE 'SR' END, n, 'Series ' || n,
       s.study_date, s.study_time,
       jsonb_build_object(
           '0020000E', jsonb_build_object('vr', 'UI',
                'Value', jsonb_build_array($4::text || '.2.' || s.id || '.' || n)),
           '00080060', jsonb_build_object('vr', 'CS',
                'Value', jsonb_build_array(CASE WHEN n = 1 THEN s.modalities[1] ELSE 'SR' END)),
           '00200011', jsonb_build_object('vr', 'IS', 'Value', jsonb_build_array(n))),
       $5::int
FROM studies s CROSS JOIN generate_series(1, $3::int) AS n
WHERE s.id BETWEEN $1 AND $2
"""

_INSTANCES = """
INSERT INTO instances (id, version, sop_instance_uid, sop_class_uid, study_uid, series_uid,
    series_pk, study_pk, status, instance_number, transfer_syntax_uid, blob_key, size_bytes,
    metadata, stored_at)
SELECT (se.id - 1) * $3::int + k, (se.id - 1) * $3::int + k, se.series_uid || '.' || k,
       '1.2.840.10008.5.1.4.1.1.2', st.study_uid, se.series_uid, se.id, st.id, 'stored', k,
       '1.2.840.10008.1.2.1', 'v1/bench/' || ((se.id - 1) * $3::int + k), 524288,
       jsonb_build_object(
           '00080018', jsonb_build_object('vr', 'UI',
                'Value', jsonb_build_array(se.series_uid || '.' || k)),
           '00080016', jsonb_build_object('vr', 'UI',
                'Value', jsonb_build_array('1.2.840.10008.5.1.4.1.1.2')),
           '00200013', jsonb_build_object('vr', 'IS', 'Value', jsonb_build_array(k)),
           '00280010', jsonb_build_object('vr', 'US', 'Value', jsonb_build_array(512)),
           '00280011', jsonb_build_object('vr', 'US', 'Value', jsonb_build_array(512))),
       now()
FROM series se JOIN studies st ON st.id = se.study_pk CROSS JOIN generate_series(1, $3::int) AS k
WHERE se.study_pk BETWEEN $1 AND $2
"""

_SEQUENCES = """
SELECT setval('patients_id_seq', (SELECT max(id) FROM patients)),
       setval('studies_id_seq', (SELECT max(id) FROM studies)),
       setval('series_id_seq', (SELECT max(id) FROM series)),
       setval('instances_id_seq', (SELECT max(id) FROM instances)),
       setval('instance_version_seq', (SELECT max(version) FROM instances))
"""


async def loaded_studies(conn: asyncpg.Connection[Any]) -> int:
    """How many synthetic studies the index holds (the highest study id)."""
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM studies"))


async def bulk_load(
    conn: asyncpg.Connection[Any], instances: int, *, batch_studies: int = 20_000
) -> int:
    """Grow the synthetic index to ``instances`` stored instances; return the study count."""
    target = max(1, instances // INSTANCES_PER_STUDY)
    start = await loaded_studies(conn) + 1
    while start <= target:
        end = min(target, start + batch_studies - 1)
        async with conn.transaction():
            await conn.execute(_PATIENTS, start, end, list(FAMILY), list(GIVEN))
            await conn.execute(
                _STUDIES, start, end, UID_ROOT, SERIES_PER_STUDY, INSTANCES_PER_SERIES,
                list(MODALITIES),
            )  # fmt: skip
            await conn.execute(
                _SERIES, start, end, SERIES_PER_STUDY, UID_ROOT, INSTANCES_PER_SERIES
            )
            await conn.execute(_INSTANCES, start, end, INSTANCES_PER_SERIES)
        start = end + 1
    await conn.fetch(_SEQUENCES)
    # What autovacuum does after a bulk load: statistics and the visibility map
    # (which index-only scans rely on).
    await conn.execute("VACUUM (ANALYZE) patients, studies, series, instances")
    return target


async def time_queries(
    client: httpx.AsyncClient, queries: Mapping[str, Mapping[str, str]], repeats: int
) -> dict[str, list[float]]:
    """Latency samples (seconds) of ``GET /studies`` with limit 100 for each query."""
    samples: dict[str, list[float]] = {name: [] for name in queries}
    for name, params in queries.items():
        request = {**params, "limit": "100"}
        await client.get("/dicom-web/studies", params=request)  # warm up
        for _ in range(repeats):
            started = time.perf_counter()
            response = await client.get("/dicom-web/studies", params=request)
            samples[name].append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: HTTP {response.status_code} {response.text[:200]}")
    return samples


def figures(
    small: Mapping[str, list[float]], large: Mapping[str, list[float]], sizes: tuple[int, int]
) -> list[Figure]:
    """p95 at both sizes and their ratio (the acceptance bound is 2.0) for every query."""
    out: list[Figure] = []
    for name in small:
        p95_small, p95_large = percentile(small[name], 0.95), percentile(large[name], 0.95)
        detail = {
            "instances": list(sizes),
            "p50_ms": [median(small[name]) * 1000, median(large[name]) * 1000],
            "p95_ms": [p95_small * 1000, p95_large * 1000],
        }
        metric = Metric("qido scale", f"{name}: p95 ratio {sizes[1]}/{sizes[0]}", "x", False)
        out.append(Figure(metric, p95_large / p95_small, "bound 2.0", detail))
    return out


async def measure(
    settings_dsn: str | None, data_dir: Path, small: int, large: int, repeats: int
) -> list[Figure]:
    """Load ``small`` instances, time; grow to ``large``, time again; return the figures."""
    from pydantic import SecretStr

    from skypacs.config import IndexSettings, Settings
    from skypacs.runtime import open_runtime
    from skypacs.services.qido.app import create_app

    index = IndexSettings(dsn=SecretStr(settings_dsn) if settings_dsn else None, pool_max_size=4)
    settings = Settings(data_dir=data_dir, index=index)
    async with open_runtime(settings, migrate=True, relay=False) as runtime:
        app = create_app(settings)
        app.state.runtime = runtime
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            async with runtime.index.pool.acquire() as conn:
                await bulk_load(conn, small)  # type: ignore[arg-type]
            at_small = await time_queries(client, COMMON_QUERIES, repeats)
            async with runtime.index.pool.acquire() as conn:
                await bulk_load(conn, large)  # type: ignore[arg-type]
            at_large = await time_queries(client, COMMON_QUERIES, repeats)
    return figures(at_small, at_large, (small, large))


def _report(rows: Sequence[Figure]) -> str:
    lines = [f"{'query':45} {'p95 small ms':>13} {'p95 large ms':>13} {'ratio':>7}"]
    for figure in rows:
        p95 = figure.detail["p95_ms"]
        name = figure.metric.name.split(":")[0]
        lines.append(f"{name:45} {p95[0]:13.2f} {p95[1]:13.2f} {figure.value or 0:7.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", type=int, default=10_000, help="instances first measured")
    parser.add_argument("--large", type=int, default=1_000_000, help="instances then measured")
    parser.add_argument("--repeats", type=int, default=30, help="timed requests per query")
    parser.add_argument("--dsn", default=None, help="a migrated, empty database to use")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="skypacs-qido-scale-") as tmp:
        rows = asyncio.run(measure(args.dsn, Path(tmp), args.small, args.large, args.repeats))
    sys.stdout.write(_report(rows) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps([row.as_json() for row in rows], indent=2))
    return 0 if all(row.value is not None and row.value <= 2.0 for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
