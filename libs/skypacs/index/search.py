"""QIDO-RS searches over the index (PS3.18 §10.6): one SQL statement per request.

Each matching key is answered by the cheapest source that holds it: a typed,
indexed column of ``studies``/``series``/``instances``; the administrator's extra
query attributes (``extra_query_values``, see :mod:`.search_extra`); or the level's
DICOM JSON (``studies.attrs``, ``series.attrs``, ``instances.metadata``), which
also serves keys inside sequences. Keys of a level below the one searched match
when any stored child matches. Only ``stored`` instances and series/studies that
still hold one are ever seen. Results come in a fixed order ending in the row id,
so paging with ``offset`` never repeats or skips an entity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from skypacs.dicomweb.qido_params import Attribute, Level, QidoQuery, RangeMatch, Term, ValueMatch
from skypacs.ingest.records import SERIES_LEVEL_TAGS, STUDY_LEVEL_TAGS

from .search_match import Binds, Kind, predicate

if TYPE_CHECKING:
    from .pool import Connection

__all__ = ["SearchHit", "SearchPage", "search"]

_ALIAS: Final = {Level.STUDY: "st", Level.SERIES: "se", Level.INSTANCE: "i"}
_JSON: Final = {Level.STUDY: "st.attrs", Level.SERIES: "se.attrs", Level.INSTANCE: "i.metadata"}
_DEPTH: Final = {Level.STUDY: 0, Level.SERIES: 1, Level.INSTANCE: 2}

#: Typed columns: tag -> (level, SQL expression, kind).
COLUMNS: Final[dict[str, tuple[Level, str, Kind]]] = {
    "0020000D": (Level.STUDY, "st.study_uid", "text"),
    "00080020": (Level.STUDY, "st.study_date", "text"),
    "00080030": (Level.STUDY, "st.study_time", "text"),
    "00080050": (Level.STUDY, "st.accession_number", "text"),
    "00080061": (Level.STUDY, "st.modalities", "array"),
    "00080062": (Level.STUDY, "st.sop_classes", "array"),
    "00080090": (Level.STUDY, "st.referring_physician_name", "text"),
    "00081030": (Level.STUDY, "st.study_description", "text"),
    "00100010": (Level.STUDY, "st.patient_name", "text"),
    "00100020": (Level.STUDY, "st.patient_id", "text"),
    "00100030": (Level.STUDY, "st.patient_birth_date", "text"),
    "00100040": (Level.STUDY, "st.patient_sex", "text"),
    "00200010": (Level.STUDY, "st.study_id", "text"),
    "00201206": (Level.STUDY, "st.num_series", "int"),
    "00201208": (Level.STUDY, "st.num_instances", "int"),
    "0020000E": (Level.SERIES, "se.series_uid", "text"),
    "00080060": (Level.SERIES, "se.modality", "text"),
    "00200011": (Level.SERIES, "se.series_number", "int"),
    "0008103E": (Level.SERIES, "se.series_description", "text"),
    "00080021": (Level.SERIES, "se.series_date", "text"),
    "00080031": (Level.SERIES, "se.series_time", "text"),
    "00180015": (Level.SERIES, "se.body_part_examined", "text"),
    "00201209": (Level.SERIES, "se.num_instances", "int"),
    "00080018": (Level.INSTANCE, "i.sop_instance_uid", "text"),
    "00080016": (Level.INSTANCE, "i.sop_class_uid", "text"),
    "00200013": (Level.INSTANCE, "i.instance_number", "int"),
    "00280008": (Level.INSTANCE, "i.number_of_frames", "int"),
}
#: Date columns and their paired time columns, for combined range matching.
_DATE_TIME: Final = {
    "00080020": "skypacs_datetime(st.study_date, st.study_time)",
    "00080021": "skypacs_datetime(se.series_date, se.series_time)",
}

#: Plan a search for its own values. The best plan depends on them: a name,
#: date or modality kept by one study in ten is found fastest by walking the
#: study-list index in result order until the page is full, a rare one through
#: the trigram or column index. After five runs of a prepared statement Postgres
#: may switch to one generic plan, estimated without the values, that picks the
#: trigram index for every name and then reads and sorts every match.
CUSTOM_PLANS: Final = "SET LOCAL plan_cache_mode = force_custom_plan"
#: Keys whose exact value finds a handful of rows through its own index, whatever
#: the value: one cached plan suits them all, and planning anew costs more than
#: the search (about 0.6 ms).
_IDENTIFYING_TAGS: Final = frozenset({"00100020", "00080050", "0020000D", "0020000E", "00080018"})

_STUDY_ORDER = "st.study_date DESC NULLS LAST, st.study_time DESC NULLS LAST, st.id DESC"
_STUDY_FIELDS = (
    "st.study_uid, st.attrs AS study_attrs, st.num_series, st.num_instances AS study_instances, "
    "st.modalities, st.sop_classes"
)
_SERIES_FIELDS = "se.series_uid, se.attrs AS series_attrs, se.num_instances AS series_instances"


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One matching entity with the DICOM JSON and aggregates of its levels."""

    study_uid: str
    study_attrs: dict[str, Any]
    num_series: int
    study_instances: int
    modalities: list[str]
    sop_classes: list[str]
    series_uid: str | None = None
    series_attrs: dict[str, Any] | None = None
    series_instances: int | None = None
    sop_instance_uid: str | None = None
    instance_attrs: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A page of hits; ``more`` says whether further results exist beyond it."""

    hits: list[SearchHit]
    more: bool


def _attribute_level(attribute: Attribute) -> Level:
    tag = attribute.tag
    if len(attribute.path) == 1 and tag in COLUMNS:
        return COLUMNS[tag][0]
    if tag in STUDY_LEVEL_TAGS:
        return Level.STUDY
    return Level.SERIES if tag in SERIES_LEVEL_TAGS else Level.INSTANCE


def _json_predicate(term: Term, level: Level, binds: Binds) -> str | None:
    """Match inside the level's DICOM JSON, through sequence items for dotted keys."""
    attribute = term.attribute
    source, joins = _JSON[level], []
    for depth, tag in enumerate(attribute.path[:-1]):
        joins.append(f"skypacs_items({source} -> {binds.add(tag)}) AS q{depth}")
        source = f"q{depth}"
    condition = predicate("v.value", "text", attribute.vr, term.matcher, binds)
    if condition is None:
        return None
    leaf = f"skypacs_json_values({source} -> {binds.add(attribute.path[-1])}) AS v(value)"
    return f"EXISTS (SELECT 1 FROM {', '.join([*joins, leaf])} WHERE {condition})"


def _extra_predicate(term: Term, searched: Level, binds: Binds) -> str | None:
    condition = predicate("x.value", "text", term.attribute.vr, term.matcher, binds)
    if condition is None:
        return None
    tag = binds.add(term.attribute.tag)
    if searched is Level.INSTANCE:
        scope = "x.instance_pk = i.id"
    else:
        owner = "x.study_pk = st.id" if searched is Level.STUDY else "x.series_pk = se.id"
        scope = (
            f"{owner} AND EXISTS (SELECT 1 FROM instances xi "
            "WHERE xi.id = x.instance_pk AND xi.status = 'stored')"
        )
    return (
        f"EXISTS (SELECT 1 FROM extra_query_values x WHERE {scope} AND x.tag = {tag} "
        f"AND {condition})"
    )


def _below(condition: str, level: Level, searched: Level) -> str:
    """Wrap a condition on a lower level: some stored child must satisfy it."""
    if level is Level.SERIES:
        return (
            "EXISTS (SELECT 1 FROM series se WHERE se.study_pk = st.id "
            f"AND se.num_instances > 0 AND {condition})"
        )
    owner = "i.study_pk = st.id" if searched is Level.STUDY else "i.series_pk = se.id"
    if searched is Level.STUDY and "se." in condition:
        return (
            "EXISTS (SELECT 1 FROM instances i JOIN series se ON se.id = i.series_pk "
            f"WHERE {owner} AND i.status = 'stored' AND {condition})"
        )
    return (
        f"EXISTS (SELECT 1 FROM instances i WHERE {owner} AND i.status = 'stored' AND {condition})"
    )


def _split_combined(term: Term) -> list[Term]:
    """Date and time ranges matched separately where no combined value is indexed."""
    matcher = term.matcher
    assert isinstance(matcher, RangeMatch)
    assert term.merged is not None
    low, high = matcher.low, matcher.high
    date = RangeMatch(low[:8] if low else None, high[:8] if high else None)
    time = RangeMatch(low[8:] or None if low else None, high[8:] or None if high else None)
    return [Term(term.param, term.attribute, date), Term(term.param, term.merged, time)]


def _term_condition(
    term: Term, searched: Level, extra_tags: frozenset[str], binds: Binds
) -> str | None:
    attribute = term.attribute
    if (
        isinstance(term.matcher, RangeMatch)
        and term.matcher.combined
        and (attribute.tag not in _DATE_TIME or attribute.tag in extra_tags)
    ):
        parts = [_term_condition(t, searched, extra_tags, binds) for t in _split_combined(term)]
        return " AND ".join(p for p in parts if p is not None) or None
    level = _attribute_level(attribute)
    if len(attribute.path) == 1 and attribute.tag in extra_tags and attribute.tag not in COLUMNS:
        return _extra_predicate(term, searched, binds)
    if len(attribute.path) == 1 and attribute.tag in COLUMNS:
        _level, expr, kind = COLUMNS[attribute.tag]
        condition = _column_condition(term, expr, kind, binds)
    else:
        condition = _json_predicate(term, level, binds)
    if condition is None or _DEPTH[level] <= _DEPTH[searched]:
        return condition
    return _below(condition, level, searched)


def _column_condition(term: Term, expr: str, kind: Kind, binds: Binds) -> str | None:
    matcher = term.matcher
    if isinstance(matcher, RangeMatch) and matcher.combined and term.attribute.tag in _DATE_TIME:
        combined = predicate(_DATE_TIME[term.attribute.tag], kind, "DT", matcher, binds)
        # The date column alone bounds the same range and can use its index.
        low = matcher.low[:8] if matcher.low else None
        high = matcher.high[:8] if matcher.high else None
        by_date = predicate(expr, kind, "DA", RangeMatch(low, high), binds)
        return f"{by_date} AND {combined}"
    return predicate(expr, kind, term.attribute.vr, matcher, binds)


def _from_clause(level: Level) -> tuple[str, str]:
    if level is Level.STUDY:
        return "studies st", "st.num_instances > 0"
    if level is Level.SERIES:
        return "series se JOIN studies st ON st.id = se.study_pk", "se.num_instances > 0"
    return (
        "instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = i.study_pk",
        "i.status = 'stored'",
    )


def _order(query: QidoQuery) -> str:
    if query.level is Level.STUDY:
        return _STUDY_ORDER
    if query.level is Level.SERIES:
        return "se.series_number NULLS LAST, se.id" if query.study_uid else "se.id DESC"
    if query.series_uid:
        return "i.instance_number NULLS LAST, i.id"
    return "i.series_pk, i.instance_number NULLS LAST, i.id" if query.study_uid else "i.id DESC"


def _fields(level: Level, instance_tags: frozenset[str] | None, binds: Binds) -> str:
    fields = [_STUDY_FIELDS]
    if level is not Level.STUDY:
        fields.append(_SERIES_FIELDS)
    if level is Level.INSTANCE:
        if instance_tags is None:
            metadata = "i.metadata"
        else:
            tags = binds.add(sorted(instance_tags))
            metadata = (
                "(SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb) "
                f"FROM jsonb_each(i.metadata) AS e WHERE e.key = ANY({tags}::text[]))"
            )
        fields.append(f"i.sop_instance_uid, {metadata} AS instance_attrs")
    return ", ".join(fields)


def build_statement(
    query: QidoQuery,
    *,
    limit: int,
    extra_tags: frozenset[str] = frozenset(),
    instance_tags: frozenset[str] | None = None,
) -> tuple[str, list[Any]]:
    """The SQL and bind values for ``query``: at most ``limit + 1`` rows."""
    binds = Binds()
    source, visible = _from_clause(query.level)
    conditions = [visible]
    if query.study_uid is not None:
        conditions.append(f"st.study_uid = {binds.add(query.study_uid)}")
    if query.series_uid is not None:
        conditions.append(f"se.series_uid = {binds.add(query.series_uid)}")
    for term in query.terms:
        condition = _term_condition(term, query.level, extra_tags, binds)
        if condition is not None:
            conditions.append(f"({condition})")
    fields = _fields(query.level, instance_tags, binds)
    where = " AND ".join(conditions)
    limit_bind, offset_bind = binds.add(limit + 1), binds.add(query.offset)
    if query.level is Level.STUDY:
        where = f"st.id IN ({_study_ids(where, limit_bind, offset_bind)})"
        source = "studies st"
    return (
        f"SELECT {fields} FROM {source} WHERE {where} "
        f"ORDER BY {_order(query)} LIMIT {limit_bind} OFFSET {offset_bind}"
    ), binds.values


def _study_ids(where: str, limit: str, offset: str) -> str:
    """The ids of the studies up to the end of the page, found before any wide row is read.

    This needs nothing but the listing index's columns for the common filters
    (date range, modalities, patient name), so Postgres walks that index in result
    order without visiting the table and stops at the page's end; the wide rows
    (the study JSON) are then read for those ids alone.
    """
    return (
        f"SELECT st.id FROM studies st WHERE {where} "
        f"ORDER BY {_STUDY_ORDER} LIMIT {limit}::bigint + {offset}::bigint"
    )


def _hit(row: Any) -> SearchHit:
    data = dict(row)
    return SearchHit(
        study_uid=data["study_uid"],
        study_attrs=data["study_attrs"],
        num_series=data["num_series"],
        study_instances=data["study_instances"],
        modalities=list(data["modalities"]),
        sop_classes=list(data["sop_classes"]),
        series_uid=data.get("series_uid"),
        series_attrs=data.get("series_attrs"),
        series_instances=data.get("series_instances"),
        sop_instance_uid=data.get("sop_instance_uid"),
        instance_attrs=data.get("instance_attrs"),
    )


def plan_fits_any_value(query: QidoQuery) -> bool:
    """Whether one cached plan serves ``query`` whatever its values.

    True for searches inside a study or series (the path names it) and for an
    exact PatientID, AccessionNumber or UID; any other search is planned for
    its values (:data:`CUSTOM_PLANS`).
    """
    if query.study_uid is not None or query.series_uid is not None:
        return True
    return any(_identifies(term) for term in query.terms)


def _identifies(term: Term) -> bool:
    matcher = term.matcher
    return (
        term.attribute.tag in _IDENTIFYING_TAGS
        and isinstance(matcher, ValueMatch)
        and bool(matcher.values)
        and not matcher.patterns
    )


async def search(
    conn: Connection,
    query: QidoQuery,
    *,
    limit: int,
    extra_tags: frozenset[str] = frozenset(),
    instance_tags: frozenset[str] | None = None,
) -> SearchPage:
    """Run ``query``: up to ``limit`` hits after ``query.offset``, in a stable order.

    ``extra_tags`` are the administrator's indexed query attributes;
    ``instance_tags`` limits the instance JSON returned (None: all of it).
    Unless :func:`plan_fits_any_value`, the statement runs in a read-only
    transaction (a savepoint inside a caller's) planned for these values.
    """
    sql, values = build_statement(
        query, limit=limit, extra_tags=extra_tags, instance_tags=instance_tags
    )
    if plan_fits_any_value(query):
        rows = await conn.fetch(sql, *values)
    else:
        async with conn.transaction(readonly=True):
            await conn.execute(CUSTOM_PLANS)
            rows = await conn.fetch(sql, *values)
    return SearchPage([_hit(row) for row in rows[:limit]], more=len(rows) > limit)
