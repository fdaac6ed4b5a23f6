"""QIDO-RS at scale: the common study-list queries on a small and a large synthetic index.

The loader writes patients, studies, series and ``stored`` instances with
``generate_series`` (ten instances per study: two series of five), in id ranges,
so an index can be grown step by step and kept between runs (``--data-dir``).
Family names and modalities follow fixed shares, spread over the ids by a
multiplicative hash (three families of 12% each, CT 35%, MR 25%...), given names
cycle, and study dates are spread evenly over 2010-2024.

Fair comparison: both indexes live in one Postgres server, in two databases, and
every query is sent with the same text to both, limit 100, alternating between
them. The values are chosen so that each query returns the same number of rows at
both sizes: a full page of 100 for the study-list queries (each filter keeps more
than 10% of the studies, so the small index also fills a page) and one study for
the identifier lookups. The rows returned per size are printed; a difference
fails the run, and so does a p95 ratio (large / small) above 2.

Run: ``python -m bench.qido_scale --small 10000 --large 1000000 --data-dir DIR``
(an embedded Postgres in DIR, kept and reused next run; a temporary directory
without ``--data-dir``; ``--dsn`` names an external server instead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from bench.figures import Figure, Metric
from bench.stats import median, percentile

INSTANCES_PER_SERIES: Final = 5
SERIES_PER_STUDY: Final = 2
INSTANCES_PER_STUDY: Final = INSTANCES_PER_SERIES * SERIES_PER_STUDY
UID_ROOT: Final = "1.2.826.0.1.3680043.10.543"
LIMIT: Final = 100
BOUND: Final = 2.0

#: Family names and their share of patients, in percent.
FAMILY_SHARES: Final = (
    ("Nguyen", 12), ("Müller", 12), ("Smith", 12), ("Johnson", 4), ("García", 4), ("Okafor", 4),
    ("Schmidt", 4), ("Rossi", 4), ("Dubois", 4), ("Kowalski", 4), ("Yamada", 4),
    ("Søndergaard", 4), ("Brown", 4), ("López", 4), ("Ivanov", 4), ("Öztürk", 4), ("Martin", 4),
    ("Andersson", 4), ("Novák", 4),
)  # fmt: skip
GIVEN: Final = ("John", "Anna", "José", "Zoë", "Peter", "Chloé", "Ali", "Mei", "Lars", "Ines")
#: Modalities of the studies' first series and their share, in percent.
MODALITY_SHARES: Final = (
    ("CT", 35), ("MR", 25), ("US", 10), ("CR", 10), ("DX", 8), ("MG", 5), ("PT", 4), ("NM", 3),
)  # fmt: skip
_FAMILY_HASH: Final = 2654435761
_MODALITY_HASH: Final = 2246822519


def _slots(shares: Sequence[tuple[str, int]]) -> list[str]:
    """One entry per percent: the value a hash bucket 0..99 maps to."""
    slots = [value for value, share in shares for _ in range(share)]
    if len(slots) != 100:
        raise ValueError("shares must add up to 100")
    return slots


FAMILY_SLOTS: Final = _slots(FAMILY_SHARES)
MODALITY_SLOTS: Final = _slots(MODALITY_SHARES)


def _bucket(key: int, multiplier: int) -> int:
    """The hash bucket (0..99) the loader's SQL computes for ``key``."""
    return (key * multiplier) % 2**32 // 65536 % 100


def patient_name(patient: int) -> str:
    """The synthetic PatientName of patient (and study) ``patient``."""
    given = GIVEN[(patient // 7) % len(GIVEN)]
    return f"{FAMILY_SLOTS[_bucket(patient, _FAMILY_HASH)]}^{given}^{patient}"


#: The study-list queries viewers send most, as QIDO-RS parameters (sent with limit 100).
#: Study-list filters keep more than 10% of studies (a full page at both sizes);
#: identifier lookups find one study.
COMMON_QUERIES: Final[dict[str, dict[str, str]]] = {
    "study list": {},
    "PatientID": {"PatientID": "PID00000777"},
    "PatientName, one patient": {"PatientName": patient_name(777)},
    "PatientName prefix": {"PatientName": "Ngu*"},
    "PatientName fuzzy": {"PatientName": "muller", "fuzzymatching": "true"},
    "PatientName contains": {"PatientName": "*mit*"},
    "AccessionNumber": {"AccessionNumber": "A00000777"},
    "StudyDate range + ModalitiesInStudy": {
        "StudyDate": "20200101-20241231",
        "ModalitiesInStudy": "CT",
    },
    "StudyInstanceUID": {"StudyInstanceUID": f"{UID_ROOT}.1.777"},
}

_PATIENTS = """
INSERT INTO patients (id, patient_id, patient_name, birth_date, sex)
SELECT p, 'PID' || lpad(p::text, 8, '0'),
       ($3::text[])[1 + (p * 2654435761) % 4294967296 / 65536 % 100] || '^'
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
CROSS JOIN LATERAL (SELECT ($6::text[])[1 + (p.id * 2246822519) % 4294967296 / 65536 % 100]
                        AS modality) m
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
            await conn.execute(_PATIENTS, start, end, FAMILY_SLOTS, list(GIVEN))
            await conn.execute(
                _STUDIES, start, end, UID_ROOT, SERIES_PER_STUDY, INSTANCES_PER_SERIES,
                MODALITY_SLOTS,
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
    clients: Sequence[httpx.AsyncClient], queries: Mapping[str, Mapping[str, str]], repeats: int
) -> tuple[list[dict[str, list[float]]], list[dict[str, int]]]:
    """Latency samples (seconds) and rows returned of each query, per client.

    Every round sends the query to each client in turn, the order alternating
    between rounds, so that load from elsewhere on the machine hits both alike.
    """
    samples: list[dict[str, list[float]]] = [{name: [] for name in queries} for _ in clients]
    rows: list[dict[str, int]] = [{} for _ in clients]
    for name, params in queries.items():
        request = {**params, "limit": str(LIMIT)}
        for index, client in enumerate(clients):
            response = await _get(client, name, request)  # warm up
            rows[index][name] = len(response.json()) if response.status_code == 200 else 0
        for round_ in range(repeats):
            order = list(enumerate(clients))
            for index, client in order if round_ % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                await _get(client, name, request)
                samples[index][name].append(time.perf_counter() - started)
    return samples, rows


async def _get(client: httpx.AsyncClient, name: str, params: Mapping[str, str]) -> httpx.Response:
    response = await client.get("/dicom-web/studies", params=params)
    if response.status_code not in (200, 204):
        raise RuntimeError(f"{name}: HTTP {response.status_code} {response.text[:200]}")
    return response


@dataclass(frozen=True)
class Measured:
    """Latency samples and rows returned of every query at one index size."""

    instances: int
    samples: Mapping[str, list[float]]
    rows: Mapping[str, int]


def figures(small: Measured, large: Measured) -> list[Figure]:
    """p50/p95 and rows at both sizes and the p95 ratio (bound 2.0) for every query."""
    out: list[Figure] = []
    sizes = [small.instances, large.instances]
    for name, at_small in small.samples.items():
        at_large = large.samples[name]
        p95_small, p95_large = percentile(at_small, 0.95), percentile(at_large, 0.95)
        detail = {
            "instances": sizes,
            "rows": [small.rows[name], large.rows[name]],
            "p50_ms": [median(at_small) * 1000, median(at_large) * 1000],
            "p95_ms": [p95_small * 1000, p95_large * 1000],
        }
        metric = Metric("qido scale", f"{name}: p95 ratio {sizes[1]}/{sizes[0]}", "x", False)
        out.append(Figure(metric, p95_large / p95_small, f"bound {BOUND}", detail))
    return out


def passed(figure: Figure) -> bool:
    """Within the bound, and the same rows count at both sizes."""
    rows = figure.detail["rows"]
    return figure.value is not None and figure.value <= BOUND and rows[0] == rows[1]


def database_dsn(server_dsn: str, database: str) -> str:
    """``server_dsn`` pointing at ``database`` instead."""
    parts = urlsplit(server_dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def _create_database(server_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


async def prepare_database(server_dsn: str, instances: int) -> str:
    """A migrated database holding ``instances`` synthetic instances; return its DSN.

    An existing database of that size is reused (pending migrations applied and
    statistics refreshed); a bigger one is refused.
    """
    from skypacs.index.migrator import apply_migrations

    database = f"skypacs_qido_scale_{instances}"
    await _create_database(server_dsn, database)
    dsn = database_dsn(server_dsn, database)
    conn = await asyncpg.connect(dsn, command_timeout=None)
    try:
        applied = await apply_migrations(conn)
        target = max(1, instances // INSTANCES_PER_STUDY)
        loaded = await loaded_studies(conn)
        if loaded > target:
            raise RuntimeError(f"{database} holds {loaded} studies, more than {target}; drop it")
        if loaded < target:
            await bulk_load(conn, instances)
        elif applied:
            await conn.execute("VACUUM (ANALYZE) studies")
    finally:
        await conn.close()
    return dsn


@asynccontextmanager
async def postgres_server(dsn: str | None, data_dir: Path) -> AsyncIterator[str]:
    """A DSN for the server holding the benchmark databases (embedded in ``data_dir``)."""
    if dsn is not None:
        yield dsn
        return
    from skypacs.index.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(data_dir / "postgres")
    try:
        yield await embedded.start()
    finally:
        await embedded.stop()


@asynccontextmanager
async def qido_client(dsn: str, data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a QIDO-RS app (in this process) over the database ``dsn``."""
    from pydantic import SecretStr

    from skypacs.config import IndexSettings, Settings
    from skypacs.runtime import open_runtime
    from skypacs.services.qido.app import create_app

    settings = Settings(data_dir=data_dir, index=IndexSettings(dsn=SecretStr(dsn), pool_max_size=4))
    async with open_runtime(settings, migrate=False, relay=False) as runtime:
        app = create_app(settings)
        app.state.runtime = runtime
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                yield client
        finally:
            # What the app's lifespan does on shutdown: store the queued audit rows.
            await app.state.security.aclose()


async def measure(
    dsn: str | None, data_dir: Path, sizes: tuple[int, int], repeats: int
) -> list[Figure]:
    """Prepare both indexes, time every query against both in one run; return the figures."""
    async with postgres_server(dsn, data_dir) as server, AsyncExitStack() as stack:
        clients = []
        for instances in sizes:
            _say(f"index of {instances} instances: loading or reusing")
            database = await prepare_database(server, instances)
            clients.append(await stack.enter_async_context(qido_client(database, data_dir)))
        _say(f"timing {len(COMMON_QUERIES)} queries x {repeats} rounds")
        samples, rows = await time_queries(clients, COMMON_QUERIES, repeats)
    small, large = (Measured(n, s, r) for n, s, r in zip(sizes, samples, rows, strict=True))
    return figures(small, large)


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def report(rows: Sequence[Figure]) -> str:
    """A table: rows returned, p50 and p95 at both sizes, the p95 ratio and the verdict."""
    sizes = rows[0].detail["instances"] if rows else [0, 0]
    lines = [
        f"instances: small {sizes[0]}, large {sizes[1]}; limit {LIMIT}; bound {BOUND}",
        f"{'query':37} {'rows':>9} {'p50 ms':>15} {'p95 ms':>15} {'ratio':>6}",
    ]
    for figure in rows:
        d = figure.detail
        name = figure.metric.name.split(":")[0]
        lines.append(
            f"{name:37} {d['rows'][0]:>4}/{d['rows'][1]:<4} "
            f"{d['p50_ms'][0]:7.2f}/{d['p50_ms'][1]:<7.2f} "
            f"{d['p95_ms'][0]:7.2f}/{d['p95_ms'][1]:<7.2f} {figure.value or 0:6.2f}"
            + ("" if passed(figure) else "  FAIL")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", type=int, default=10_000, help="instances of the small index")
    parser.add_argument("--large", type=int, default=1_000_000, help="instances of the large one")
    parser.add_argument(
        "--repeats", type=int, default=100, help="timed requests per query and size"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="keep (and reuse) the indexes here"
    )
    parser.add_argument(
        "--dsn", default=None, help="a Postgres server to use (may create databases)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    sizes = (args.small, args.large)
    if args.data_dir is not None:
        rows = asyncio.run(measure(args.dsn, args.data_dir, sizes, args.repeats))
    else:
        with tempfile.TemporaryDirectory(prefix="skypacs-qido-scale-") as tmp:
            rows = asyncio.run(measure(args.dsn, Path(tmp), sizes, args.repeats))
    sys.stdout.write(report(rows) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps([row.as_json() for row in rows], indent=2))
    return 0 if all(passed(row) for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
