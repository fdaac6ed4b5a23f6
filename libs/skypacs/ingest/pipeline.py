"""Store one Part 10 instance: stream it to the blob store, then index it.

The bytes flow straight from the request to the blob store while
:class:`~skypacs.dicom.part10_scanner.Part10Scanner` watches them go by; only the
data set header is held in memory. The index write is two-phase (PS3.18 §10.5
requires that a success means the instance is durable): a ``creating`` claim
first, the blob next, then one transaction that flips the row to ``stored`` and
appends the outbox event. Whatever fails on the way is undone here, and the
sweeper catches what a crash leaves behind. A request takes its claims in
blocks (:class:`ClaimSupply`), so that most instances need no round trip of
their own before their bytes go to the blob store.

A multipart request stages every instance (claim and blob) before committing
any, so a request refused as a whole (truncated, too large, too many parts)
leaves nothing stored: its staged instances are discarded instead. Its staged
instances are then committed together in one index transaction (one savepoint
each), which costs one durable commit instead of one per instance.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from functools import lru_cache

import asyncpg
from pydicom.dataset import Dataset
from pydicom.uid import UID

from skypacs.config import Settings
from skypacs.dicom.attributes import instance_index_fields
from skypacs.dicom.parse_errors import DicomParseError
from skypacs.dicom.part10_scanner import Part10Scanner, ScanResult
from skypacs.dicom.transfer_syntaxes import get_transfer_syntax
from skypacs.dicomweb.status import FailureReason
from skypacs.errors import SkypacsError, StorageFull
from skypacs.index import Index
from skypacs.index import instances as index_instances
from skypacs.index.hierarchy import SeriesInOtherStudy
from skypacs.index.instances import Claim, CommitResult, DuplicatePolicy, Outcome
from skypacs.index.maintenance import forget
from skypacs.storage import BlobStore, PutResult

from .records import build_record

log = logging.getLogger(__name__)

_SERIES_MOVED = "Series Instance UID already belongs to another study"
_DUPLICATE = "a different instance is stored under this SOP Instance UID"
_SWEPT = "upload took too long and was swept; send it again"


@dataclass(frozen=True)
class StoreOutcome:
    """The answer for one instance: a success, or a DICOM failure reason."""

    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    failure: int | None = None
    detail: str = ""
    outcome: Outcome | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class Staged:
    """An instance whose blob is written and whose ``creating`` claim awaits commit."""

    claim: Claim
    scan: ScanResult
    stored: PutResult
    identity: dict[str, str]


class InstanceRejected(Exception):
    """An instance failed validation; carries its DICOM failure reason."""

    def __init__(self, reason: int, detail: str, identity: Dataset | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.identity = identity


def _uid_or_none(ds: Dataset | None, keyword: str) -> str | None:
    value = ds.get(keyword) if ds is not None else None
    return str(value) if value else None


@lru_cache(maxsize=256)
def _is_non_storage_sop_class(uid: str) -> bool:
    """A registered SOP Class that is not a storage class (e.g. Verification).

    Unknown and private SOP classes are accepted: archives must keep them.
    An archive sees few distinct classes, so the answers are kept.
    """
    known = UID(uid)
    return known.is_valid and known.type == "SOP Class" and "Storage" not in known.name


def _one_left(_taken: int, _size_hint: int | None) -> int:
    return 1


class ClaimSupply:
    """The claims of one request, taken from the index a block at a time.

    ``instances_left(taken, size_hint)`` says how many instances the request is
    expected to hold still, the one about to be claimed included, once ``taken``
    claims were handed out (``size_hint``: the size the instance about to be
    claimed foretells, if any); a block is that many claims, at most
    ``max_block``. Claims
    no instance took are given back by :meth:`release`, which the request must
    call however it ends (the sweeper removes them after a crash).
    """

    def __init__(
        self,
        index: Index,
        *,
        max_block: int = 1,
        instances_left: Callable[[int, int | None], int] = _one_left,
    ) -> None:
        self._index = index
        self._max_block = max_block
        self._instances_left = instances_left
        self._spare: deque[Claim] = deque()
        self._taken = 0
        self._lock = asyncio.Lock()

    async def take(self, size_hint: int | None = None) -> Claim:
        """The next claim; a round trip to the index only when none is spare."""
        async with self._lock:
            if not self._spare:
                left = self._instances_left(self._taken, size_hint)
                wanted = min(self._max_block, left)
                async with self._index.pool.acquire() as conn:
                    self._spare.extend(await index_instances.claim(conn, max(1, wanted)))
            self._taken += 1
            return self._spare.popleft()

    async def release(self) -> None:
        """Drop the claims no instance took (best effort, as :meth:`Ingestor._undo`)."""
        spare = list(self._spare)
        self._spare.clear()
        if not spare:
            return
        try:
            async with self._index.pool.acquire() as conn:
                await index_instances.abandon(conn, spare)
        except (SkypacsError, OSError) as exc:
            log.warning("could not release %d spare claim(s): %s", len(spare), type(exc).__name__)


class Ingestor:
    """Stores Part 10 streams for one process: shared by every request."""

    def __init__(self, index: Index, blobs: BlobStore, settings: Settings) -> None:
        self._index = index
        self._blobs = blobs
        self._settings = settings
        self._policy = DuplicatePolicy(settings.stow.duplicate_policy)

    async def store(
        self, chunks: AsyncIterable[bytes], *, expected_study: str | None = None
    ) -> StoreOutcome:
        """Store one instance read from ``chunks`` (which is always fully consumed)."""
        staged = await self.stage(chunks, expected_study=expected_study)
        return await self.commit(staged) if isinstance(staged, Staged) else staged

    async def commit_all(self, items: list[Staged | StoreOutcome]) -> list[StoreOutcome]:
        """Commit staged instances, all in one transaction when there are several.

        If the commit raises, every staged instance is discarded (nothing of the
        request was committed). A batch that loses a lock race (deadlock) with
        another request is committed again instance by instance.
        """
        staged = [item for item in items if isinstance(item, Staged)]
        if len(staged) < 2:
            return await self._commit_each(items)
        try:
            committed = await self._commit_batch(staged)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            log.info("batch commit of %d instances retried one by one", len(staged))
            return await self._commit_each(items)
        except BaseException:
            await self.discard_all(items)
            raise
        answers = iter(committed)
        return [next(answers) if isinstance(item, Staged) else item for item in items]

    async def _commit_each(self, items: list[Staged | StoreOutcome]) -> list[StoreOutcome]:
        """Commit staged instances in order; if one commit raises, discard the rest."""
        outcomes: list[StoreOutcome] = []
        for position, item in enumerate(items):
            if not isinstance(item, Staged):
                outcomes.append(item)
                continue
            try:
                outcomes.append(await self.commit(item))
            except BaseException:
                await self.discard_all(items[position + 1 :])
                raise
        return outcomes

    async def _commit_batch(self, staged: list[Staged]) -> list[StoreOutcome]:
        """One transaction for ``staged``, in request order; outcomes in that order."""
        records = [(item.claim, self._record(item)) for item in staged]
        async with self._index.pool.acquire() as conn:
            results = await index_instances.commit_many(
                conn, records, policy=self._policy, source=self._settings.events.source
            )
        return [
            await self._settle(item, result) for item, result in zip(staged, results, strict=True)
        ]

    async def discard_all(self, items: list[Staged | StoreOutcome]) -> None:
        """Drop staged instances (claim and blob) of a request refused as a whole."""
        for item in items:
            if isinstance(item, Staged):
                await self._undo(item.claim, blob_written=True)

    async def stage(
        self,
        chunks: AsyncIterable[bytes],
        *,
        expected_study: str | None = None,
        claims: ClaimSupply | None = None,
    ) -> Staged | StoreOutcome:
        """Claim and write one instance read from ``chunks`` (always fully consumed).

        The claim comes from ``claims``, or from a block of its own. Returns what
        :meth:`commit` needs, or the failure for an instance refused on the way;
        nothing is visible to queries until the commit.
        """
        stream = aiter(chunks)
        scanner = Part10Scanner(
            max_header_bytes=self._settings.stow.max_dataset_header_bytes,
            bulk_threshold=self._settings.stow.bulk_data_threshold_bytes,
        )
        head: list[bytes] = []
        try:
            dataset, scan = await self._read_header(stream, scanner, head)
            identity = self._validate(dataset, scanner.transfer_syntax_uid, expected_study)
        except (DicomParseError, InstanceRejected) as exc:
            await _drain(stream)
            return _failure(exc)
        claim = await (claims or ClaimSupply(self._index)).take(scanner.expected_size)
        return await self._stage_validated(claim, identity, stream, scanner, head, scan)

    async def _read_header(
        self, stream: AsyncIterator[bytes], scanner: Part10Scanner, head: list[bytes]
    ) -> tuple[Dataset, ScanResult | None]:
        """Feed until the header is known; the scanned bytes wait in ``head``."""
        while not scanner.header_complete:
            chunk = await anext(stream, None)
            if chunk is None:
                scan = scanner.finish()
                return scan.dataset, scan
            head.append(scanner.feed(chunk))
        return scanner.peek_dataset(), None

    def _validate(
        self, dataset: Dataset, syntax_uid: str, expected_study: str | None
    ) -> dict[str, str]:
        """PS3.18 §10.5.3 checks; raises :class:`InstanceRejected` with the reason."""
        try:
            fields = instance_index_fields(dataset)
        except SkypacsError as exc:
            reason = exc.failure_reason or FailureReason.CANNOT_UNDERSTAND
            raise InstanceRejected(reason, exc.detail, dataset) from None
        if get_transfer_syntax(syntax_uid) is None:
            raise InstanceRejected(
                FailureReason.REFERENCED_TRANSFER_SYNTAX_NOT_SUPPORTED,
                "unknown transfer syntax",
                dataset,
            )
        if _is_non_storage_sop_class(fields["sop_class_uid"]):
            raise InstanceRejected(
                FailureReason.SOP_CLASS_NOT_SUPPORTED, "not a storage SOP class", dataset
            )
        if expected_study is not None and fields["study_uid"] != expected_study:
            raise InstanceRejected(
                FailureReason.STUDY_INSTANCE_UID_MISMATCH,
                "Study Instance UID does not match the request URL",
                dataset,
            )
        fields["transfer_syntax_uid"] = syntax_uid
        return fields

    async def _stage_validated(
        self,
        claim: Claim,
        identity: dict[str, str],
        stream: AsyncIterator[bytes],
        scanner: Part10Scanner,
        head: list[bytes],
        scan: ScanResult | None,
    ) -> Staged | StoreOutcome:
        stored: PutResult | None = None
        try:
            stored = await self._blobs.put(
                claim.blob_key, _forward(head, stream, scanner), fresh=True
            )
            scan = scan or scanner.finish()
        except (DicomParseError, StorageFull) as exc:
            await self._undo(claim, blob_written=stored is not None)
            await _drain(stream)
            return _failure(exc, identity)
        except BaseException:
            await self._undo(claim, blob_written=True)
            raise
        return Staged(claim=claim, scan=scan, stored=stored, identity=identity)

    async def commit(self, staged: Staged) -> StoreOutcome:
        """Phase two for a staged instance; its claim and blob are undone on error."""
        try:
            return await self._commit(staged)
        except BaseException:
            await self._undo(staged.claim, blob_written=True)
            raise

    def _record(self, staged: Staged) -> index_instances.InstanceRecord:
        return build_record(
            staged.scan,
            staged.stored,
            bulk_threshold=self._settings.stow.bulk_data_threshold_bytes,
            fields=staged.identity,
        )

    async def _commit(self, staged: Staged) -> StoreOutcome:
        record = self._record(staged)
        try:
            async with self._index.pool.acquire() as conn:
                result = await index_instances.commit(
                    conn,
                    staged.claim,
                    record,
                    policy=self._policy,
                    source=self._settings.events.source,
                )
        except SeriesInOtherStudy:
            result = None
        return await self._settle(staged, result)

    async def _settle(self, staged: Staged, result: CommitResult | None) -> StoreOutcome:
        """The outcome of a committed instance; cleans up what the commit left behind.

        ``None`` means the series belongs to another study: nothing was committed.
        """
        identity = staged.identity
        if result is None:
            await self._undo(staged.claim, blob_written=True)
            return _outcome(
                identity, FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, _SERIES_MOVED
            )
        await self._discard(result.orphaned_blob_keys, result.replaced_row_pks)
        if result.outcome is Outcome.REJECTED:
            return _outcome(identity, FailureReason.DUPLICATE_SOP_INSTANCE, _DUPLICATE)
        if result.outcome is Outcome.VANISHED:
            return _outcome(identity, FailureReason.PROCESSING_FAILURE, _SWEPT)
        return _outcome(identity, None, "", result.outcome)

    async def _discard(self, blob_keys: tuple[str, ...], replaced_pks: tuple[int, ...]) -> None:
        """Remove blobs that the committed transaction left unreferenced."""
        try:
            for key in blob_keys:
                await self._blobs.delete(key)
            if replaced_pks:
                async with self._index.pool.acquire() as conn:
                    await forget(conn, replaced_pks, statuses=("replaced",))
        except (SkypacsError, OSError) as exc:  # the sweeper will finish the job
            log.warning("deferred cleanup of %d blob(s): %s", len(blob_keys), type(exc).__name__)

    async def _undo(self, claim: Claim, *, blob_written: bool) -> None:
        """Best-effort removal of a claim and its blob; the sweeper covers failures."""
        try:
            if blob_written:
                await self._blobs.delete(claim.blob_key)
            async with self._index.pool.acquire() as conn:
                await index_instances.abandon(conn, [claim])
        except (SkypacsError, OSError) as exc:
            log.warning("could not undo claim %d: %s", claim.version, type(exc).__name__)


class StagingQueue:
    """Stages the instances of one request in order, several finishing at once.

    :meth:`add` returns as soon as an instance's bytes have all been read from
    the request, so its last write, fsync and rename run while the next part
    arrives; at most ``depth`` instances are in flight (bounded memory).
    :meth:`results` waits for them all, in request order; :meth:`abandon`
    waits for them too and discards whatever was staged.
    """

    def __init__(
        self,
        ingestor: Ingestor,
        expected_study: str | None,
        claims: ClaimSupply,
        depth: int = 4,
    ) -> None:
        self._ingestor = ingestor
        self._study = expected_study
        self._claims = claims
        self._depth = depth
        self._items: list[asyncio.Task[Staged | StoreOutcome] | StoreOutcome] = []
        self._reading: asyncio.Task[Staged | StoreOutcome] | None = None

    def _tasks(self) -> list[asyncio.Task[Staged | StoreOutcome]]:
        return [item for item in self._items if isinstance(item, asyncio.Task)]

    def add_outcome(self, outcome: StoreOutcome) -> None:
        """A part refused without staging (its failure goes in the answer as is)."""
        self._items.append(outcome)

    async def add(self, chunks: AsyncIterable[bytes]) -> None:
        """Start staging ``chunks``; return once they are consumed (or staging failed)."""
        running = [task for task in self._tasks() if not task.done()]
        if len(running) >= self._depth:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        consumed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(
            self._ingestor.stage(
                _signal_end(chunks, consumed), expected_study=self._study, claims=self._claims
            )
        )
        task.add_done_callback(lambda _: _resolve(consumed))
        self._items.append(task)
        self._reading = task
        await consumed
        self._reading = None
        if task.done():
            task.result()  # an error refuses the whole request now

    async def results(self) -> list[Staged | StoreOutcome]:
        return [await item if isinstance(item, asyncio.Task) else item for item in self._items]

    async def abandon(self) -> None:
        """Wait for the instances in flight, then discard every staged one.

        Only an instance still reading the request is cancelled; the others
        are left to finish, so that their own cleanup is never cut short.
        """
        if self._reading is not None:
            self._reading.cancel()
        tasks = self._tasks()
        if tasks:
            await asyncio.wait(tasks)
        staged: list[Staged | StoreOutcome] = [
            task.result() for task in tasks if not task.cancelled() and task.exception() is None
        ]
        await self._ingestor.discard_all(staged)


async def _signal_end(
    chunks: AsyncIterable[bytes], ended: asyncio.Future[None]
) -> AsyncIterator[bytes]:
    """``chunks``, resolving ``ended`` once they are all read.

    Not when reading fails: the staging then ends with that error, which must be
    the one the request is answered with.
    """
    async for chunk in chunks:
        yield chunk
    _resolve(ended)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _forward(
    head: list[bytes], stream: AsyncIterator[bytes], scanner: Part10Scanner
) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    head.clear()
    async for chunk in stream:
        yield scanner.feed(chunk)


async def _drain(stream: AsyncIterator[bytes]) -> None:
    async for _ in stream:
        pass


def _outcome(
    identity: dict[str, str], failure: int | None, detail: str, outcome: Outcome | None = None
) -> StoreOutcome:
    return StoreOutcome(
        sop_class_uid=identity.get("sop_class_uid"),
        sop_instance_uid=identity.get("sop_instance_uid"),
        study_uid=identity.get("study_uid"),
        series_uid=identity.get("series_uid"),
        failure=failure,
        detail=detail,
        outcome=outcome,
    )


def _failure(
    exc: DicomParseError | StorageFull | InstanceRejected, identity: dict[str, str] | None = None
) -> StoreOutcome:
    if isinstance(exc, InstanceRejected):
        ds = exc.identity
        return StoreOutcome(
            sop_class_uid=_uid_or_none(ds, "SOPClassUID"),
            sop_instance_uid=_uid_or_none(ds, "SOPInstanceUID"),
            study_uid=_uid_or_none(ds, "StudyInstanceUID"),
            failure=exc.reason,
            detail=exc.detail,
        )
    reason = exc.failure_reason or FailureReason.CANNOT_UNDERSTAND
    return _outcome(identity or {}, reason, exc.detail)


__all__ = ["ClaimSupply", "Ingestor", "Staged", "StagingQueue", "StoreOutcome"]
