"""Instance writes: the two-phase store and the aggregates it keeps current.

Phase one (:func:`claim`) inserts ``creating`` rows, several in one statement,
each reserving an immutable version and the blob key built from it. Phase two
(:func:`commit`) fills in the instance's identity, links the row into the
patient/study/series hierarchy, flips it to ``stored``, updates the study and
series aggregates and appends the outbox event, all in one transaction.
Concurrent uploads of one SOP Instance UID race on a partial unique index; the
loser reconciles from the ``UniqueViolationError`` (never check-then-insert).
:func:`commit_many` runs phase two for the instances of one request in a single
transaction (one WAL flush) instead of one transaction each, flipping them all in
one statement and updating each study row once per series, not per instance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import asyncpg

from skypacs.events.model import Event, EventType, new_event

from . import aggregates, hierarchy
from .outbox import append_many
from .pool import encode_json

if TYPE_CHECKING:
    from .pool import Connection


class DuplicatePolicy(StrEnum):
    """What to do with different bytes under a stored SOP Instance UID."""

    REJECT = "reject"
    OVERWRITE = "overwrite"
    KEEP = "keep"


class Outcome(StrEnum):
    STORED = "stored"  # new instance, event instance.stored
    REPLACED = "replaced"  # new version over an old one, event instance.updated
    IDENTICAL = "identical"  # same bytes were already stored: success, no event
    KEPT = "kept"  # different bytes, policy keep: the stored version stays
    REJECTED = "rejected"  # different bytes, policy reject: failure 0x0111
    VANISHED = "vanished"  # the claim was swept before commit: retry


@dataclass(frozen=True)
class Claim:
    pk: int
    version: int
    blob_key: str


@dataclass(frozen=True)
class InstanceRecord:
    """Everything the index keeps about one stored instance."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    patient: hierarchy.PatientFields
    study: hierarchy.StudyFields
    series: hierarchy.SeriesFields
    instance_number: int | None
    number_of_frames: int | None
    size_bytes: int
    sha256: bytes
    pixel_data_offset: int | None
    frame_ranges: list[list[tuple[int, int]]] | None
    bulk_ranges: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommitResult:
    outcome: Outcome
    # Blob keys that are no longer referenced once the transaction committed.
    orphaned_blob_keys: tuple[str, ...] = ()
    # Rows of superseded versions, to forget once their blobs are gone.
    replaced_row_pks: tuple[int, ...] = ()


#: Consecutive versions that share a blob key prefix (one directory on a filesystem).
BLOB_KEY_GROUP = 64


def blob_key_for(version: int) -> str:
    """Blob key of an instance version: spread over prefixes, no client input.

    The prefix comes from the version's group of :data:`BLOB_KEY_GROUP`, so a
    young archive on a filesystem makes a directory (and syncs its parent) once
    per group rather than for nearly every instance, while the groups still
    spread evenly over the 65,536 prefixes. Keys are stored with their rows;
    older keys (one prefix per version) stay valid.
    """
    digest = hashlib.sha256(str(version // BLOB_KEY_GROUP).encode()).hexdigest()
    return f"v1/{digest[:2]}/{digest[2:4]}/{version}.dcm"


# One round trip for a block of claims: each version comes from the sequence and
# its key is built as blob_key_for() builds it (sha256 of the decimal group
# number, two 2-hex prefixes).
_CLAIM = """
WITH v AS (SELECT nextval('instance_version_seq') AS version{mode}
           FROM generate_series(1, $1)),
     h AS (SELECT version,
                  encode(sha256(convert_to((version / {group})::text, 'UTF8')), 'hex') AS hex
           FROM v)
INSERT INTO instances (version, blob_key)
SELECT version,
       'v1/' || substr(hex, 1, 2) || '/' || substr(hex, 3, 2) || '/' || version || '.dcm'
FROM h
ORDER BY version
RETURNING id, version, blob_key
"""
_CLAIM_IN_TRANSACTION = _CLAIM.format(mode="", group=BLOB_KEY_GROUP)
# set_config(..., true) is SET LOCAL: it lasts for the statement's own implicit
# transaction only (see claim()).
_CLAIM_ALONE = _CLAIM.format(
    mode=", set_config('synchronous_commit', 'off', true) AS mode", group=BLOB_KEY_GROUP
)


async def claim(conn: Connection, count: int = 1) -> list[Claim]:
    """Phase one: reserve ``count`` versions and their blob keys as ``creating`` rows.

    A claim holds no identity yet: the instance it will carry may not even be
    parsed, and :func:`commit` fills the UIDs in. Claims come in version order.

    Outside a transaction the claims commit asynchronously (``synchronous_commit
    = off`` for their own transaction only): they do not wait for their WAL to
    reach disk. That is safe because a claim acknowledges nothing. An instance
    is acknowledged only after :func:`commit`, whose synchronous commit flushes
    the WAL up to its own record, which lies after the claim's, so an
    acknowledged instance always has a durable claim. A crash before then can
    lose the claim but never an acknowledged instance: the client got no
    success, and the sweeper removes the blob that has no row (and any claim
    that survived as a stale ``creating`` row). Inside a caller's transaction
    the claims follow that transaction's setting.
    """
    if count < 1:
        raise ValueError("a claim reserves at least one version")
    sql = _CLAIM_IN_TRANSACTION if conn.is_in_transaction() else _CLAIM_ALONE
    rows = sorted(await conn.fetch(sql, count), key=lambda row: int(row["version"]))
    return [
        Claim(pk=int(row["id"]), version=int(row["version"]), blob_key=str(row["blob_key"]))
        for row in rows
    ]


async def abandon(conn: Connection, claims: Sequence[Claim]) -> None:
    """Drop claims whose blobs were never completed or never begun (the caller
    removes the blobs)."""
    await conn.execute(
        "DELETE FROM instances WHERE id = ANY($1::bigint[]) AND status = 'creating'",
        [claim_.pk for claim_ in claims],
    )


_FLIP = """
UPDATE instances SET
    status = 'stored', series_pk = $2, study_pk = $3, instance_number = $4,
    number_of_frames = $5, size_bytes = $6, sha256 = $7, pixel_data_offset = $8,
    frame_ranges = $9, bulk_ranges = $10, metadata = $11,
    sop_class_uid = $12, transfer_syntax_uid = $13,
    sop_instance_uid = $14, study_uid = $15, series_uid = $16,
    stored_at = now(), updated_at = now()
WHERE id = $1 AND status = 'creating'
"""

# The flip for a whole batch, in one statement and with no savepoint, so no
# unique violation wanted: a claim whose SOP Instance UID has a stored twin (in
# the statement's snapshot) is left as it is, for _reconcile. ``claimed`` tells
# apart a claim that was swept meanwhile (no longer 'creating').
_FLIP_BATCH = """
WITH batch AS (
    SELECT * FROM unnest(
        $1::bigint[], $2::bigint[], $3::bigint[], $4::integer[], $5::integer[],
        $6::bigint[], $7::bytea[], $8::bigint[], $9::text[], $10::text[],
        $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[])
    AS b (id, series_pk, study_pk, instance_number, number_of_frames,
          size_bytes, sha256, pixel_data_offset, frame_ranges, bulk_ranges,
          metadata, sop_class_uid, transfer_syntax_uid, sop_instance_uid,
          study_uid, series_uid)
),
twins AS (
    SELECT b.id FROM batch b
    WHERE EXISTS (SELECT 1 FROM instances t
                  WHERE t.sop_instance_uid = b.sop_instance_uid AND t.status = 'stored')
),
flip AS (
    UPDATE instances i SET
        status = 'stored', series_pk = b.series_pk, study_pk = b.study_pk,
        instance_number = b.instance_number, number_of_frames = b.number_of_frames,
        size_bytes = b.size_bytes, sha256 = b.sha256, pixel_data_offset = b.pixel_data_offset,
        frame_ranges = b.frame_ranges::jsonb, bulk_ranges = b.bulk_ranges::jsonb,
        metadata = b.metadata::jsonb,
        sop_class_uid = b.sop_class_uid, transfer_syntax_uid = b.transfer_syntax_uid,
        sop_instance_uid = b.sop_instance_uid, study_uid = b.study_uid,
        series_uid = b.series_uid,
        stored_at = now(), updated_at = now()
    FROM batch b
    WHERE i.id = b.id AND i.status = 'creating' AND b.id NOT IN (SELECT id FROM twins)
    RETURNING i.id
)
SELECT b.id,
       b.id IN (SELECT id FROM flip) AS flipped,
       b.id IN (SELECT id FROM twins) AS twin,
       EXISTS (SELECT 1 FROM instances c WHERE c.id = b.id AND c.status = 'creating') AS claimed
FROM batch b
"""

_STORED_TWIN = """
SELECT id, sha256, blob_key, series_pk, study_pk FROM instances
WHERE sop_instance_uid = $1 AND status = 'stored' FOR UPDATE
"""


def _flip_args(claim_: Claim, rec: InstanceRecord, ids: hierarchy.Ids) -> tuple[Any, ...]:
    return (
        claim_.pk,
        ids.series_pk,
        ids.study_pk,
        rec.instance_number,
        rec.number_of_frames,
        rec.size_bytes,
        rec.sha256,
        rec.pixel_data_offset,
        rec.frame_ranges,
        rec.bulk_ranges,
        rec.metadata,
        rec.sop_class_uid,
        rec.transfer_syntax_uid,
        rec.sop_instance_uid,
        rec.study_uid,
        rec.series_uid,
    )


async def _flip(conn: Connection, claim_: Claim, rec: InstanceRecord, ids: hierarchy.Ids) -> bool:
    status = await conn.execute(_FLIP, *_flip_args(claim_, rec, ids))
    return bool(status.endswith(" 1"))


async def commit(
    conn: Connection, claim_: Claim, rec: InstanceRecord, *, policy: DuplicatePolicy, source: str
) -> CommitResult:
    """Phase two, in one transaction: link, flip to stored, aggregates, outbox."""
    result = await commit_many(conn, [(claim_, rec)], policy=policy, source=source)
    if result[0] is None:
        raise hierarchy.SeriesInOtherStudy(rec.series_uid)
    return result[0]


async def commit_many(
    conn: Connection,
    items: Sequence[tuple[Claim, InstanceRecord]],
    *,
    policy: DuplicatePolicy,
    source: str,
) -> list[CommitResult | None]:
    """Phase two for several instances in one transaction; results in ``items`` order.

    The study and series rows are found (or upserted in a savepoint, with the
    patient's) once per distinct hierarchy, so an instance whose series is filed under another study
    (``None`` in the results) leaves the others committed. One statement then
    flips every claim, with no savepoint; the study and series counts are
    updated once per series and the outbox rows appended together at the end.
    A concurrent upload of the same SOP Instance UID (or one UID twice in the
    batch) can still make the flip violate the unique index: the transaction is
    then rolled back and run again with a savepoint around each instance's
    flip, which reconciles the loser. Concurrent batches that lock the same rows
    in opposite orders deadlock; Postgres then fails one of them
    (``DeadlockDetectedError``) and nothing of it is committed.
    """
    try:
        return await _commit_batch(conn, items, policy=policy, source=source, careful=False)
    except asyncpg.UniqueViolationError:
        return await _commit_batch(conn, items, policy=policy, source=source, careful=True)


#: Every statement of a commit finds its rows through a key (ids, UIDs), so one
#: cached plan suits any values. Postgres would plan each anew for its values
#: (array lengths change its estimates, so it keeps choosing custom plans): the
#: flip, lookups, aggregates and the triggers' statements cost about 0.1 ms of
#: planning per stored instance, more than this extra round trip per request.
GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"


async def _commit_batch(
    conn: Connection,
    items: Sequence[tuple[Claim, InstanceRecord]],
    *,
    policy: DuplicatePolicy,
    source: str,
    careful: bool,
) -> list[CommitResult | None]:
    async with conn.transaction():
        await conn.execute(GENERIC_PLANS)
        linked = await _link_hierarchy(conn, items)
        if careful:
            outcomes = [
                await _link_careful(conn, claim_, rec, ids, policy=policy, source=source)
                for claim_, rec, ids in linked
            ]
            flipped: list[tuple[hierarchy.Ids, InstanceRecord]] = []
        else:
            outcomes, flipped = await _link_all(conn, linked, policy=policy, source=source)
        await append_many(conn, [event for _, event in outcomes if event is not None])
        # Last: this locks the series and study rows until the commit.
        await aggregates.add_instances(conn, flipped)
    linked_pks = (claim_.pk for claim_, _, _ in linked)
    results = {pk: result for pk, (result, _) in zip(linked_pks, outcomes, strict=True)}
    return [results.get(claim_.pk) for claim_, _ in items]


_Linked = tuple[Claim, InstanceRecord, hierarchy.Ids]


async def _link_hierarchy(
    conn: Connection, items: Sequence[tuple[Claim, InstanceRecord]]
) -> list[_Linked]:
    """Find each distinct study and series once, or upsert them in a savepoint.

    An instance whose series is filed under another study is left out; the
    others keep their request order.
    """
    known: dict[tuple[str, str, str, str], hierarchy.Ids | None] = {}
    linked: list[_Linked] = []
    for claim_, rec in items:
        key = (rec.patient.patient_id, rec.patient.issuer, rec.study_uid, rec.series_uid)
        if key not in known:
            known[key] = await _hierarchy_ids(conn, rec)
        ids = known[key]
        if ids is not None:
            linked.append((claim_, rec, ids))
    return linked


async def _hierarchy_ids(conn: Connection, rec: InstanceRecord) -> hierarchy.Ids | None:
    """The rows ``rec`` hangs from; None when its series is filed under another study."""
    try:
        ids = await hierarchy.find(conn, rec.study_uid, rec.series_uid)
        if ids is not None:
            return ids
        async with conn.transaction():
            return await hierarchy.upsert(conn, rec.patient, rec.study, rec.series)
    except hierarchy.SeriesInOtherStudy:
        return None


#: Positions of the JSON columns (frame_ranges, bulk_ranges, metadata) in _flip_args.
_JSON_ARGS = frozenset({8, 9, 10})


def _flip_batch_args(linked: list[_Linked]) -> tuple[list[Any], ...]:
    """The columns of :data:`_FLIP_BATCH`, one array per column.

    JSON values go as text: asyncpg would take nested lists (frame ranges) for
    the dimensions of the array itself.
    """
    rows = [
        tuple(
            encode_json(value) if position in _JSON_ARGS and value is not None else value
            for position, value in enumerate(_flip_args(claim_, rec, ids))
        )
        for claim_, rec, ids in linked
    ]
    return tuple(list(column) for column in zip(*rows, strict=True))


async def _link_all(
    conn: Connection, linked: list[_Linked], *, policy: DuplicatePolicy, source: str
) -> tuple[list[tuple[CommitResult, Event | None]], list[tuple[hierarchy.Ids, InstanceRecord]]]:
    """Flip every claim in one statement; twins go to reconciling.

    Returns the outcomes and the flipped instances, which the caller counts into
    their series and studies. Raises ``UniqueViolationError`` (aborting the
    transaction) only when a twin was stored concurrently, after the statement's
    snapshot, or when the batch holds one SOP Instance UID twice.
    """
    if not linked:
        return [], []
    rows = {row["id"]: row for row in await conn.fetch(_FLIP_BATCH, *_flip_batch_args(linked))}
    flipped = [(ids, rec) for claim_, rec, ids in linked if rows[claim_.pk]["flipped"]]
    outcomes: list[tuple[CommitResult, Event | None]] = []
    for claim_, rec, ids in linked:
        row = rows[claim_.pk]
        if row["flipped"]:
            event = _event(EventType.INSTANCE_STORED, rec, claim_, source)
            outcomes.append((CommitResult(Outcome.STORED), event))
        elif row["twin"] and row["claimed"]:
            outcomes.append(await _reconcile(conn, claim_, rec, ids, policy=policy, source=source))
        else:
            outcomes.append((CommitResult(Outcome.VANISHED), None))
    return outcomes, flipped


async def _link_careful(
    conn: Connection,
    claim_: Claim,
    rec: InstanceRecord,
    ids: hierarchy.Ids,
    *,
    policy: DuplicatePolicy,
    source: str,
) -> tuple[CommitResult, Event | None]:
    """Flip the claim under a savepoint: a unique violation is reconciled in place."""
    try:
        async with conn.transaction():
            flipped = await _flip(conn, claim_, rec, ids)
    except asyncpg.UniqueViolationError:
        return await _reconcile(conn, claim_, rec, ids, policy=policy, source=source)
    if not flipped:
        return CommitResult(Outcome.VANISHED), None
    await aggregates.add_instance(conn, ids, rec)
    return CommitResult(Outcome.STORED), _event(EventType.INSTANCE_STORED, rec, claim_, source)


async def _reconcile(
    conn: Connection,
    claim_: Claim,
    rec: InstanceRecord,
    ids: hierarchy.Ids,
    *,
    policy: DuplicatePolicy,
    source: str,
) -> tuple[CommitResult, Event | None]:
    """Another version is stored: same bytes succeed, different bytes follow policy.

    The twin can change under a concurrent store of the same UID: one replaced
    by an overwrite is skipped by the locking read, and the flip that follows
    then meets the new version in the unique index. The flip runs in a
    savepoint, and a violation starts over with a fresh read of the twin.
    """
    for _ in range(_RECONCILE_ATTEMPTS):
        twin = await conn.fetchrow(_STORED_TWIN, rec.sop_instance_uid)
        if twin is not None:
            return await _settle_twin(conn, claim_, rec, ids, twin, policy=policy, source=source)
        try:
            async with conn.transaction():
                flipped = await _flip(conn, claim_, rec, ids)
        except asyncpg.UniqueViolationError:
            continue
        if not flipped:
            return CommitResult(Outcome.VANISHED), None
        await aggregates.add_instance(conn, ids, rec)
        return CommitResult(Outcome.STORED), _event(EventType.INSTANCE_STORED, rec, claim_, source)
    raise RuntimeError("stored twin kept changing while reconciling")


#: Fresh reads of a twin that concurrent stores keep replacing (see _reconcile).
_RECONCILE_ATTEMPTS = 10


async def _settle_twin(
    conn: Connection,
    claim_: Claim,
    rec: InstanceRecord,
    ids: hierarchy.Ids,
    twin: asyncpg.Record,
    *,
    policy: DuplicatePolicy,
    source: str,
) -> tuple[CommitResult, Event | None]:
    """``twin`` (locked) is stored under the claim's UID: apply the duplicate policy."""
    if bytes(twin["sha256"]) == rec.sha256 or policy is not DuplicatePolicy.OVERWRITE:
        await conn.execute("DELETE FROM instances WHERE id = $1", claim_.pk)
        outcome = (
            Outcome.IDENTICAL
            if bytes(twin["sha256"]) == rec.sha256
            else Outcome.KEPT
            if policy is DuplicatePolicy.KEEP
            else Outcome.REJECTED
        )
        return CommitResult(outcome, orphaned_blob_keys=(claim_.blob_key,)), None
    await conn.execute(
        "UPDATE instances SET status = 'replaced', updated_at = now() WHERE id = $1", twin["id"]
    )
    if not await _flip(conn, claim_, rec, ids):
        raise RuntimeError("claimed instance row disappeared during overwrite")
    await aggregates.recompute(
        conn, {twin["series_pk"], ids.series_pk}, {twin["study_pk"], ids.study_pk}
    )
    result = CommitResult(
        Outcome.REPLACED,
        orphaned_blob_keys=(str(twin["blob_key"]),),
        replaced_row_pks=(int(twin["id"]),),
    )
    return result, _event(EventType.INSTANCE_UPDATED, rec, claim_, source)


def _event(kind: EventType, rec: InstanceRecord, claim_: Claim, source: str) -> Event:
    return new_event(
        kind,
        partition_key=rec.study_uid,
        subject=f"studies/{rec.study_uid}/series/{rec.series_uid}/instances/{rec.sop_instance_uid}",
        source=source,
        data={
            "study_uid": rec.study_uid,
            "series_uid": rec.series_uid,
            "sop_instance_uid": rec.sop_instance_uid,
            "sop_class_uid": rec.sop_class_uid,
            "version": claim_.version,
            "size_bytes": rec.size_bytes,
            "transfer_syntax_uid": rec.transfer_syntax_uid,
        },
    )
