"""The common QIDO-RS queries use the right indexes on a large synthetic index (no timing).

200,000 stored instances (20,000 studies) are bulk-loaded with the benchmark's
loader. Each common study-list query (limit 100) and the scoped series/instance
searches are planned by Postgres; the plan must reach ``studies`` (and the other
big tables) through an index, never a sequential scan, and through the index that
keeps the cost of a page independent of the index size:

- a filter kept by many studies (the benchmark's study-list queries, one study in
  ten or more) walks the listing index in result order, index-only, and stops at
  the end of the page;
- a rare value (one patient, a rare name) is found through the trigram, folded
  name or column index, and only its few matches are sorted.

The plan a search really gets is checked too: repeated searches through
:func:`skypacs.index.search.search` must keep the plan for their values, not fall
back to a generic plan (logged by ``auto_explain`` on the searching connection).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from bench.qido_scale import COMMON_QUERIES, UID_ROOT, patient_name

from skypacs.dicomweb.qido_params import Level, parse_query
from skypacs.dicomweb.qido_results import instance_tags
from skypacs.index.search import build_statement, search
from tests.integration.qido_helpers import synthetic_index

pytestmark = pytest.mark.integration

INSTANCES = 200_000
LISTING = "studies_listing_idx"
TRIGRAM = "studies_patient_name_trgm_idx"
FOLDED = "studies_patient_name_fold_idx"
#: The index each benchmark query is expected to be answered with.
EXPECTED_INDEX = {
    "study list": LISTING,
    "PatientID": "studies_patient_id_idx",
    "PatientName, one patient": TRIGRAM,
    "PatientName prefix": LISTING,
    "PatientName fuzzy": LISTING,
    "PatientName contains": LISTING,
    "AccessionNumber": "studies_accession_idx",
    "StudyDate range + ModalitiesInStudy": LISTING,
    "StudyInstanceUID": "studies_study_uid_key",
}
#: Name queries kept by few studies (0.4% and one patient): answered from the name indexes.
RARE_NAME_QUERIES: dict[str, tuple[dict[str, str], set[str]]] = {
    "prefix": ({"PatientName": "Kowalski^Ali*"}, {TRIGRAM}),
    "fuzzy": ({"PatientName": "kowalski ali", "fuzzymatching": "true"}, {TRIGRAM, FOLDED}),
    "one patient, fuzzy": (
        {"PatientName": patient_name(4242).replace("^", " "), "fuzzymatching": "true"},
        {TRIGRAM, FOLDED},
    ),
}


@pytest.fixture(scope="module")
async def big_index(pg_server_dsn: str, pg_template: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    async with synthetic_index(pg_server_dsn, pg_template, INSTANCES) as conn:
        yield conn


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _statement(level: Level, params: dict[str, str], **scope: str) -> tuple[str, list[Any]]:
    query = parse_query(list({**params, "limit": "100"}.items()), level, **scope)
    return build_statement(query, limit=100, instance_tags=instance_tags(query))


async def _plan(conn: asyncpg.Connection[Any], level: Level, params: dict[str, str],
                **scope: str) -> list[dict[str, Any]]:  # fmt: skip
    sql, values = _statement(level, params, **scope)
    explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *values)
    return list(_nodes(explained[0]["Plan"]))


def _seq_scanned(nodes: list[dict[str, Any]]) -> set[str]:
    return {n.get("Relation Name", "") for n in nodes if n["Node Type"] == "Seq Scan"}


def _indexes(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["Index Name"] for n in nodes if "Index Name" in n}


def _walks_listing(nodes: list[dict[str, Any]]) -> bool:
    """The study ids come from the listing index, index-only, with no bitmap gathering."""
    walked = any(
        n["Node Type"] == "Index Only Scan" and n.get("Index Name") == LISTING for n in nodes
    )
    return walked and not any(n["Node Type"] == "Bitmap Heap Scan" for n in nodes)


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
    assert EXPECTED_INDEX[name] in _indexes(nodes), _indexes(nodes)
    if EXPECTED_INDEX[name] == LISTING:
        assert _walks_listing(nodes), nodes


@pytest.mark.parametrize("name", list(RARE_NAME_QUERIES))
async def test_rare_names_use_the_name_indexes(
    big_index: asyncpg.Connection[Any], name: str
) -> None:
    params, expected = RARE_NAME_QUERIES[name]
    nodes = await _plan(big_index, Level.STUDY, params)
    assert "studies" not in _seq_scanned(nodes), nodes
    assert expected <= _indexes(nodes), _indexes(nodes)
    assert LISTING not in _indexes(nodes), _indexes(nodes)


async def test_repeated_searches_keep_the_plan_for_their_values(
    big_index: asyncpg.Connection[Any],
) -> None:
    """A generic plan (chosen after five runs of a prepared statement) would use the
    trigram index for every name; the searches must keep walking the listing index."""
    plans: list[dict[str, Any]] = []

    def collect(_conn: Any, message: Any) -> None:
        text = str(message.message)
        if text.startswith("duration:") and "{" in text:
            plans.append(json.loads(text[text.index("{") :]))

    await big_index.execute("LOAD 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_format = json", "log_level = log"):
        await big_index.execute(f"SET auto_explain.{setting}")
    await big_index.execute("SET client_min_messages = log")
    big_index.add_log_listener(collect)
    try:
        for name in ("PatientName prefix", "PatientName fuzzy"):
            query = parse_query(list({**COMMON_QUERIES[name], "limit": "100"}.items()), Level.STUDY)
            for _ in range(8):
                page = await search(big_index, query, limit=100)
                assert len(page.hits) == 100
                assert page.more
            nodes = list(_nodes(plans[-1]["Plan"]))
            assert _walks_listing(nodes), (name, nodes)
    finally:
        big_index.remove_log_listener(collect)
        await big_index.execute("RESET client_min_messages")
        await big_index.execute("SET auto_explain.log_min_duration = -1")


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
