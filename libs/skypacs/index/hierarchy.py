"""Patient, study and series rows: find-or-create inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

    from .pool import Connection


@dataclass(frozen=True)
class PatientFields:
    patient_id: str = ""
    issuer: str = ""
    patient_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyFields:
    study_uid: str
    study_date: str | None = None
    study_time: str | None = None
    accession_number: str | None = None
    study_id: str | None = None
    study_description: str | None = None
    referring_physician_name: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SeriesFields:
    series_uid: str
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    series_date: str | None = None
    series_time: str | None = None
    body_part_examined: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ids:
    patient_pk: int
    study_pk: int
    series_pk: int


_PATIENT = """
WITH ins AS (
    INSERT INTO patients (patient_id, issuer, patient_name, birth_date, sex, attrs)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (patient_id, issuer) DO NOTHING
    RETURNING id)
SELECT id FROM ins
UNION ALL
SELECT id FROM patients WHERE patient_id = $1 AND issuer = $2
LIMIT 1
"""

# Study and series rows are found or created without an update: the row lock
# their counts need is taken by the aggregates update at the end of the
# transaction, so concurrent commits into one study wait for each other only
# that long. Meanwhile a KEY SHARE lock (which other stores share) keeps the
# row from being deleted as empty. The first instance's attributes are kept,
# as most archives do.
_STUDY = """
WITH ins AS (
    INSERT INTO studies (study_uid, patient_pk, patient_id, patient_name, patient_birth_date,
        patient_sex, study_date, study_time, accession_number, study_id, study_description,
        referring_physician_name, attrs)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (study_uid) DO NOTHING
    RETURNING id),
found AS (SELECT id FROM studies WHERE study_uid = $1 FOR KEY SHARE)
SELECT id FROM ins
UNION ALL
SELECT id FROM found
LIMIT 1
"""

_SERIES = """
WITH ins AS (
    INSERT INTO series (series_uid, study_pk, modality, series_number, series_description,
        series_date, series_time, body_part_examined, attrs)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (series_uid) DO NOTHING
    RETURNING id, study_pk),
found AS (SELECT id, study_pk FROM series WHERE series_uid = $1 FOR KEY SHARE)
SELECT id, study_pk FROM ins
UNION ALL
SELECT id, study_pk FROM found
LIMIT 1
"""

# Most instances join a study and series that exist already: one statement finds
# both, with the same KEY SHARE locks as the upserts below, and writes nothing.
# Rows are locked in FROM order: the series first, then its study, the order in
# which emptied rows are deleted (maintenance.forget).
_EXISTING = """
SELECT st.id AS study_pk, st.patient_pk, se.id AS series_pk, se.study_pk AS series_study_pk
FROM series se, studies st
WHERE se.series_uid = $2 AND st.study_uid = $1
FOR KEY SHARE
"""

#: A row inserted by a transaction that commits after this statement's snapshot
#: is not seen by it (the insert waited for it, then did nothing); the next
#: statement sees it.
_ATTEMPTS = 5


async def _find_or_create(conn: Connection, sql: str, *args: Any) -> asyncpg.Record:
    for _ in range(_ATTEMPTS):
        row = await conn.fetchrow(sql, *args)
        if row is not None:
            return row
    raise RuntimeError("hierarchy row could not be found or created")


async def find(conn: Connection, study_uid: str, series_uid: str) -> Ids | None:
    """The keys of an existing study and series, or None when either is missing.

    Both rows are locked ``FOR KEY SHARE`` (see :func:`upsert`); the patient is
    the study's own. Raises :class:`SeriesInOtherStudy` as :func:`upsert` does.
    Nothing is written, so the caller needs no savepoint around it.
    """
    row = await conn.fetchrow(_EXISTING, study_uid, series_uid)
    if row is None:
        return None
    if row["series_study_pk"] != row["study_pk"]:
        raise SeriesInOtherStudy(series_uid)
    return Ids(
        patient_pk=int(row["patient_pk"]),
        study_pk=int(row["study_pk"]),
        series_pk=int(row["series_pk"]),
    )


async def upsert(
    conn: Connection, patient: PatientFields, study: StudyFields, series: SeriesFields
) -> Ids:
    """Find or create the three rows an instance hangs from; return their keys.

    Call it in a savepoint: :class:`SeriesInOtherStudy` can come after the
    patient and study rows were written.
    """
    patient_row = await _find_or_create(
        conn,
        _PATIENT,
        patient.patient_id,
        patient.issuer,
        patient.patient_name,
        patient.birth_date,
        patient.sex,
        patient.attrs,
    )
    patient_pk = int(patient_row["id"])
    study_row = await _find_or_create(
        conn,
        _STUDY,
        study.study_uid,
        patient_pk,
        patient.patient_id,
        patient.patient_name,
        patient.birth_date,
        patient.sex,
        study.study_date,
        study.study_time,
        study.accession_number,
        study.study_id,
        study.study_description,
        study.referring_physician_name,
        study.attrs,
    )
    study_pk = int(study_row["id"])
    row = await _find_or_create(
        conn,
        _SERIES,
        series.series_uid,
        study_pk,
        series.modality,
        series.series_number,
        series.series_description,
        series.series_date,
        series.series_time,
        series.body_part_examined,
        series.attrs,
    )
    if row["study_pk"] != study_pk:
        raise SeriesInOtherStudy(series.series_uid)
    return Ids(patient_pk=patient_pk, study_pk=study_pk, series_pk=int(row["id"]))


class SeriesInOtherStudy(Exception):
    """The Series Instance UID is already filed under another study."""
