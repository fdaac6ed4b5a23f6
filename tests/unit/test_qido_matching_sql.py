"""Wildcard and person-name patterns, and how matchers become bound SQL predicates."""

from __future__ import annotations

import re

import pytest

from skypacs.dicomweb.qido_params import Level, NameMatch, RangeMatch, ValueMatch, parse_query
from skypacs.index.search import build_statement, plan_fits_any_value
from skypacs.index.search_match import (
    Binds,
    fuzzy_regexes,
    like_pattern,
    name_regex,
    predicate,
)

pytestmark = pytest.mark.unit


def test_like_patterns_escape_sql_wildcards() -> None:
    assert like_pattern("A*B?") == "A%B_"
    assert like_pattern("50%_off\\") == "50\\%\\_off\\\\"


def _matches(query: str, stored: str) -> bool:
    """Postgres ``~*`` semantics for these patterns equal Python's with IGNORECASE."""
    return re.search(name_regex(query), stored, re.IGNORECASE) is not None


@pytest.mark.parametrize(
    ("query", "stored", "expected"),
    [
        ("Smith", "Smith^John", True),
        ("Smith", "Smithson^John", False),
        ("smith^john", "Smith^John", True),
        ("Smith^John", "Smith^Johnny", False),
        ("Smith^J*", "Smith^Johnny^^Dr", True),
        ("^John", "Smith^John", True),
        ("*mit*", "Smith^John", True),
        ("*ohn", "Smith^John", True),
        ("Sm?th", "Smith^John", True),
        ("山田^太郎", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("Yamada", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("=山田", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("=Yamada", "Yamada^Tarou=山田^太郎=やまだ^たろう", False),
        ("a.b(c)", "a.b(c)", True),
        ("a.b(c)", "axb(c)", False),
    ],
)
def test_person_name_patterns(query: str, stored: str, expected: bool) -> None:
    assert _matches(query, stored) is expected


def test_fuzzy_words_are_component_prefixes() -> None:
    patterns = fuzzy_regexes("eric ang")
    stored = "angstrom^eric"
    assert all(re.search(p, stored) for p in patterns)
    assert not any(re.search(p, "mangstrom^deric") for p in patterns)


def test_values_are_bound_never_spliced() -> None:
    binds = Binds()
    sql = predicate("t.c", "text", "LO", ValueMatch(("x'; DROP TABLE studies; --",)), binds)
    assert sql == "t.c = $1"
    assert binds.values == ["x'; DROP TABLE studies; --"]


def test_list_and_wildcards_combine_with_or() -> None:
    binds = Binds()
    sql = predicate("t.c", "text", "CS", ValueMatch(("CT", "MR", "P*")), binds)
    assert sql == "(t.c = ANY($1::text[]) OR t.c LIKE $2)"
    assert binds.values == [["CT", "MR"], "P%"]


def test_fuzzy_names_only_add_alternatives() -> None:
    binds = Binds()
    sql = predicate("n", "text", "PN", NameMatch(("smith",), True), binds)
    assert sql is not None
    assert sql.startswith("(n ~* $1 OR ")
    assert "skypacs_fold(n) ~ skypacs_fold($2)" in sql


def test_range_high_bound_covers_the_whole_prefix() -> None:
    binds = Binds()
    sql = predicate("t", "text", "TM", RangeMatch("1000", "12"), binds)
    assert sql == "skypacs_time(t) >= $1 AND left(skypacs_time(t), 2) <= $2"


def test_statement_shape_per_level() -> None:
    query = parse_query([("PatientID", "P1"), ("Modality", "CT")], Level.STUDY)
    sql, values = build_statement(query, limit=10)
    assert "FROM studies st WHERE st.num_instances > 0" in sql
    assert "EXISTS (SELECT 1 FROM series se WHERE se.study_pk = st.id" in sql
    assert sql.endswith("ORDER BY st.study_date DESC NULLS LAST, st.study_time DESC NULLS LAST, "
                        "st.id DESC LIMIT $3 OFFSET $4")  # fmt: skip
    assert values == ["P1", "CT", 11, 0]
    scoped = parse_query([], Level.INSTANCE, study_uid="1.2", series_uid="1.2.3")
    sql, values = build_statement(scoped, limit=5, instance_tags=frozenset({"00080018"}))
    assert "i.status = 'stored'" in sql
    assert values[:3] == ["1.2", "1.2.3", ["00080018"]]


def test_extra_tags_use_their_own_index() -> None:
    query = parse_query([("ProtocolName", "CHEST*")], Level.SERIES)
    sql, values = build_statement(query, limit=10, extra_tags=frozenset({"00181030"}))
    assert "FROM extra_query_values x WHERE x.series_pk = se.id" in sql
    assert "CHEST%" in values


@pytest.mark.parametrize(
    ("level", "params", "scope", "cached"),
    [
        (Level.STUDY, {"PatientID": "PID-1"}, {}, True),
        (Level.STUDY, {"00080050": "A1", "StudyDate": "20200101-"}, {}, True),
        (Level.STUDY, {"StudyInstanceUID": "1.2.3,1.2.4"}, {}, True),
        (Level.SERIES, {"Modality": "CT"}, {"study_uid": "1.2.3"}, True),
        (Level.STUDY, {}, {}, False),
        (Level.STUDY, {"PatientID": "PID*"}, {}, False),
        (Level.STUDY, {"PatientName": "Ngu*"}, {}, False),
        (Level.STUDY, {"StudyDate": "20200101-20241231", "ModalitiesInStudy": "CT"}, {}, False),
        (Level.SERIES, {"Modality": "CT"}, {}, False),
    ],
)
def test_only_identifying_or_scoped_searches_reuse_a_cached_plan(
    level: Level, params: dict[str, str], scope: dict[str, str], cached: bool
) -> None:
    query = parse_query(list(params.items()), level, **scope)
    assert plan_fits_any_value(query) is cached
