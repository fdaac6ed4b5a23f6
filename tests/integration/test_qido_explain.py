"""The common QIDO-RS queries use indexes on a large synthetic index (EXPLAIN, no timing).

200,000 stored instances (20,000 studies) are bulk-loaded with the benchmark's
loader; each common study-list query (limit 100) and the scoped series/instance
searches are planned by Postgres, and the plan must reach ``studies`` (and the
other big tables) through an index, never a sequential scan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from bench.qido_scale import COMMON_QUERIES, UID_ROOT, bulk_load

from skypacs.dicomweb.qido_params import Level, parse_query
from skypacs.dicomweb.qido_results import instance_tags
from skypacs.index.pool import init_connection
from skypacs.index.search import build_statement
from tests.integration.test_qido_corpus import scratch_database

pytestmark = pytest.mark.integration

INSTANCES = 200_000
#: The index each query is expected to be answered with.
EXPECTED_INDEX = {
    "study list": "studies_listing_idx",
    "PatientID": "studies_patient_id_idx",
    "PatientName prefix": "studies_patient_name_trgm_idx",
    "PatientName fuzzy": "studies_patient_name_fold_idx",
    "AccessionNumber": "studies_accession_idx",
    "StudyInstanceUID": "studies_study_uid_key",
}


@pytest.fixture(scope="module")
async def big_index(pg_server_dsn: str, pg_template: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    async with scratch_database(pg_server_dsn, pg_template) as dsn:
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        try:
            await bulk_load(conn, INSTANCES)
            yield conn
        finally:
            await conn.close()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plan(conn: asyncpg.Connection[Any], level: Level, params: dict[str, str],
                **scope: str) -> list[dict[str, Any]]:  # fmt: skip
    query = parse_query(list({**params, "limit": "100"}.items()), level, **scope)
    sql, values = build_statement(query, limit=100, instance_tags=instance_tags(query))
    explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *values)
    return list(_nodes(explained[0]["Plan"]))


def _seq_scanned(nodes: list[dict[str, Any]]) -> set[str]:
    return {n.get("Relation Name", "") for n in nodes if n["Node Type"] == "Seq Scan"}


def _indexes(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["Index Name"] for n in nodes if "Index Name" in n}


async def test_the_synthetic_index_has_the_expected_size(
    big_index: asyncpg.Connection[Any],
) -> None:
    count = await big_index.fetchval("SELECT count(*) FROM instances WHERE status = 'stored'")
    assert count == INSTANCES
    assert await big_index.fetchval("SELECT count(*) FROM studies") == INSTANCES // 10


@pytest.mark.parametrize("name", list(COMMON_QUERIES))
async def test_study_list_queries_use_indexes(
    big_index: asyncpg.Connection[Any], name: str
) -> None:
    nodes = await _plan(big_index, Level.STUDY, COMMON_QUERIES[name])
    assert "studies" not in _seq_scanned(nodes), nodes
    if name in EXPECTED_INDEX:
        assert EXPECTED_INDEX[name] in _indexes(nodes), _indexes(nodes)


async def test_scoped_series_and_instance_searches_use_indexes(
    big_index: asyncpg.Connection[Any],
) -> None:
    study = f"{UID_ROOT}.1.4242"
    series = f"{UID_ROOT}.2.4242.1"
    for level, scope in (
        (Level.SERIES, {"study_uid": study}),
        (Level.INSTANCE, {"study_uid": study}),
        (Level.INSTANCE, {"study_uid": study, "series_uid": series}),
    ):
        nodes = await _plan(big_index, level, {}, **scope)
        assert not _seq_scanned(nodes) & {"studies", "series", "instances"}, nodes


async def test_unscoped_series_and_instance_lists_use_indexes(
    big_index: asyncpg.Connection[Any],
) -> None:
    for level, params in (
        (Level.SERIES, {"Modality": "MR"}),
        (Level.INSTANCE, {"SOPInstanceUID": f"{UID_ROOT}.2.4242.1.3"}),
    ):
        nodes = await _plan(big_index, level, params)
        assert not _seq_scanned(nodes) & {"studies", "series", "instances"}, nodes
