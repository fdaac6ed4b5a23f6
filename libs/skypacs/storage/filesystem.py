"""Blobs as files under one root directory.

On-disk layout: every key segment but the last is a directory; the last
segment names a group of sibling files that share it as a stem::

    <root>/v1/ab/1234.dcm@data        the object bytes
    <root>/v1/ab/1234.dcm@class       its storage class label, only once set
    <root>/v1/ab/1234.dcm@tmp-<hex>   a write in progress (removed on failure)

``@`` cannot appear in a key, so files never collide with key directories and a
key ``a`` can coexist with ``a/b`` as on S3. Writes go to a temporary file in
the target directory, are fsynced, renamed over the object and the directory is
fsynced, so a reader or a crash sees the old object or the new one, never a mix.
Empty directories left by deletes are kept (a concurrent put may be using them).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import glob
import hashlib
import inspect
import os
import secrets
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy

from skypacs.errors import DependencyUnavailable, StorageFull
from skypacs.storage.base import (
    KEY_PATTERN,
    BlobInfo,
    BlobNotFound,
    BlobReader,
    Chunk,
    PutResult,
    check_range_bounds,
    resolve_range,
    validate_key,
    validate_prefix,
    validate_storage_class,
)
from skypacs.storage.threads import ThreadLane

DATA_SUFFIX = "@data"
CLASS_SUFFIX = "@class"
TEMP_MARKER = "@tmp-"
WRITE_BATCH_BYTES = 1024 * 1024
#: Bytes of a range the kernel is asked to read ahead when it is opened.
READ_AHEAD_BYTES = 8 * 1024 * 1024
LIST_BATCH = 500
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_OUTAGE_ERRNOS = frozenset({errno.EIO, errno.EROFS, errno.ENOTCONN, errno.ESTALE, errno.ENODEV})
_MISSING = (FileNotFoundError, NotADirectoryError)
#: An open object: descriptor, object size and the resolved range.
_OpenedRange = tuple[int, int, int, int]
_Opened = TypeVar("_Opened", _OpenedRange, "builtins.list[_OpenedRange]")


_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
_FADV_WILLNEED: int = getattr(os, "POSIX_FADV_WILLNEED", 0)


def _unfilled(length: int) -> memoryview:
    """A fresh writable buffer of ``length`` bytes for a read to fill.

    Not zeroed first (numpy's ``empty``): the read writes every byte of it, and
    a zeroed ``bytearray`` or a copy out of a reused buffer would cost a second
    pass over the data, a third of a series retrieve's CPU.
    """
    return numpy.empty(length, dtype=numpy.uint8).data


class _CachedReads:
    """Reads that take only what the page cache already holds, so never block.

    ``preadv`` with ``RWF_NOWAIT`` (Linux) copies the cached part of a range
    into the buffer and returns at once. Where the flag is missing or refused,
    every read reports nothing cached.
    """

    def __init__(self) -> None:
        self._usable = _RWF_NOWAIT != 0

    def read_into(self, fd: int, buffer: memoryview, offset: int) -> int:
        """How many bytes of ``buffer`` were filled from the cache at ``offset``:
        fewer than its length when the rest is not cached or the file ends."""
        if not self._usable:
            return 0
        try:
            return os.preadv(fd, [buffer], offset, _RWF_NOWAIT)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                self._usable = False
            return 0


def _read_into(fd: int, buffer: memoryview, offset: int) -> int:
    """Fill ``buffer`` from ``offset`` (blocking); short only where the file ends."""
    filled = 0
    while filled < len(buffer):
        got = os.preadv(fd, [buffer[filled:]], offset + filled)
        if got == 0:
            break
        filled += got
    return filled


def _read_ahead(fd: int, start: int, end: int) -> None:
    """Ask the kernel to start reading ``[start, end)`` (its first
    :data:`READ_AHEAD_BYTES`) into the page cache, without waiting."""
    length = min(end - start, READ_AHEAD_BYTES)
    if _FADV_WILLNEED and length > 0:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, start, length, _FADV_WILLNEED)


def _close_opened(opened: Iterable[_OpenedRange]) -> None:
    for fd, *_ in opened:
        os.close(fd)


def _close_abandoned(work: asyncio.Future[Any]) -> None:
    """Close what a thread opened for a caller that was cancelled meanwhile."""
    if work.cancelled() or work.exception() is not None:
        return
    result = work.result()
    _close_opened([result] if isinstance(result, tuple) else result)


@contextmanager
def map_os_errors() -> Iterator[None]:
    """Turn out-of-space and device failures into SkyPACS errors."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise StorageFull(f"blob filesystem is full: {exc.strerror}") from exc
        if exc.errno in _OUTAGE_ERRNOS:
            raise DependencyUnavailable(f"blob filesystem unavailable: {exc.strerror}") from exc
        raise


def fsync_dir(directory: str | Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _TempFile:
    """A new file next to its final name (or at it), created on the first write; hashed as
    written.

    Paths are plain strings: a put handles several, and ``pathlib`` operations
    cost more than the system calls they lead to.
    """

    def __init__(self, target: str, path: str) -> None:
        self.target = target
        self.path = path
        self._fd: int | None = None
        self.created = False
        # Directories made for this file, outermost first: their entries in their
        # parents are fsynced with the file's own directory, at commit.
        self.new_dirs: builtins.list[str] = []
        self.hasher = hashlib.sha256()
        self.size = 0

    def create(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o644)
        self.created = True

    def write(self, batch: builtins.list[bytes]) -> None:
        """Append ``batch`` (already hashed) with gathered writes (no joined copy)."""
        assert self._fd is not None
        pending = [memoryview(piece) for piece in batch if piece]
        while pending:
            written = os.writev(self._fd, pending)
            self.size += written
            while pending and written >= len(pending[0]):
                written -= len(pending.pop(0))
            if written:
                pending[0] = pending[0][written:]

    def close(self, *, fsync: bool) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def discard(self) -> None:
        try:
            self.close(fsync=False)
        finally:
            if self.created:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)


class FilesystemBlobStore:
    """A :class:`~skypacs.storage.base.BlobStore` over a local or mounted directory."""

    file_backed = True

    def __init__(self, root: Path, *, fsync: bool = True, read_chunk_bytes: int) -> None:
        self._root = root
        self._root_name = os.fspath(root).rstrip("/") or "/"
        self._fsync = fsync
        self._chunk = read_chunk_bytes
        self._cached = _CachedReads()

    @property
    def root(self) -> Path:
        return self._root

    def _stem(self, key: str) -> Path:
        return self._root / validate_key(key)

    def _data_path(self, key: str) -> str:
        """The object's data file (a plain string: reads open many per request)."""
        return f"{self._root_name}/{validate_key(key)}{DATA_SUFFIX}"

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        storage_class: str | None = None,
        fresh: bool = False,
    ) -> PutResult:
        """Write ``chunks`` under ``key``: temp file, fsync, rename, fsync of the directory.

        A ``fresh`` object is written in place instead (created exclusively, no
        rename). Its directory entry then exists before the file's fsync, which
        on journaling filesystems makes it durable in the same journal commit,
        so the directory fsyncs that follow find little left to do; after a
        rename they would each force a commit of their own.

        Bytes go to disk in batches of about 1 MiB; creating the file rides on
        the first batch and committing it on the last, so a small object costs
        one worker-thread hop.
        """
        stem = f"{self._root_name}/{validate_key(key)}"
        if storage_class is not None:
            validate_storage_class(storage_class)
        target = stem + DATA_SUFFIX
        temp = _TempFile(target, target if fresh else f"{stem}{TEMP_MARKER}{secrets.token_hex(8)}")
        lane = ThreadLane()
        with map_os_errors():
            try:
                last = await self._write_all(lane, temp, chunks)
                await lane.run(self._finish, temp, last, storage_class)
            except BaseException:
                await lane.settle()
                temp.discard()
                raise
        return PutResult(key=key, size=temp.size, sha256=temp.hasher.digest())

    async def _write_all(
        self, lane: ThreadLane, temp: _TempFile, chunks: AsyncIterable[bytes]
    ) -> builtins.list[bytes]:
        """Write every full batch; return the last, partial one (written by ``_finish``).

        Chunks are hashed here, as they arrive: the worker thread then only makes
        system calls, and every one it makes has to win the GIL back afterwards.
        """
        batch: builtins.list[bytes] = []
        pending = 0
        update = temp.hasher.update
        async for chunk in chunks:
            if not chunk:
                continue
            update(chunk)
            batch.append(bytes(chunk))
            pending += len(chunk)
            if pending >= WRITE_BATCH_BYTES:
                await lane.run(self._append, temp, batch)
                batch, pending = [], 0
        return batch

    def _append(self, temp: _TempFile, batch: builtins.list[bytes]) -> None:
        if not temp.created:
            self._create(temp)
        temp.write(batch)

    def _create(self, temp: _TempFile) -> None:
        """Create the temp file; its directories only when the first attempt lacks them."""
        try:
            temp.create()
        except FileNotFoundError:
            temp.new_dirs = self._make_parents(os.path.dirname(temp.path))
            temp.create()

    def _finish(
        self, temp: _TempFile, batch: builtins.list[bytes], storage_class: str | None
    ) -> None:
        self._append(temp, batch)
        self._commit(temp, storage_class)

    def _make_parents(self, directory: str) -> builtins.list[str]:
        """Create the missing directories above a new file; those created, outermost first.

        They are not fsynced here: :meth:`_commit` fsyncs their parents after the
        file itself, when one journal commit has usually made them durable already.
        """
        if not os.path.isdir(self._root_name):
            raise DependencyUnavailable(f"blob root {self._root.name!r} is missing")
        missing: builtins.list[str] = []
        current = directory
        while current != self._root_name and not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        created: builtins.list[str] = []
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            created.append(path)
        return created

    def _commit(self, temp: _TempFile, storage_class: str | None) -> None:
        """Rename the written file over the object and make every step durable.

        A directory this put created holds no class label, so none is removed;
        nor does a fresh object's key.
        """
        temp.close(fsync=self._fsync)
        stem = temp.target.removesuffix(DATA_SUFFIX)
        directory = os.path.dirname(temp.target)
        in_place = temp.path == temp.target
        if storage_class is not None:
            self._write_class(stem, storage_class)
        elif not in_place and (not temp.new_dirs or temp.new_dirs[-1] != directory):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stem + CLASS_SUFFIX)
        if not in_place:
            os.replace(temp.path, temp.target)
        if self._fsync:
            fsync_dir(directory)
            for created in reversed(temp.new_dirs):
                fsync_dir(os.path.dirname(created))

    def _write_class(self, stem: str, storage_class: str) -> None:
        """Replace the class label file atomically (no fsync of its own dir here)."""
        path = f"{stem}{TEMP_MARKER}{secrets.token_hex(8)}"
        try:
            with open(path, "xb") as handle:
                handle.write(storage_class.encode("ascii"))
                if self._fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(path, stem + CLASS_SUFFIX)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise

    async def open(self, key: str, start: int = 0, end: int | None = None) -> BlobReader:
        """A reader of ``[start, end)``, opened in one thread hop.

        The kernel starts reading the range ahead at once; chunks are then taken
        from the page cache on the event loop, or read in a worker thread when
        not there yet (see :class:`_CachedReads`).
        """
        path = self._data_path(key)
        check_range_bounds(start, end)
        opened = await self._off_loop(self._open_range, key, path, start, end)
        return self._reader(opened)

    async def open_many(self, keys: Sequence[str]) -> builtins.list[BlobReader]:
        """Readers of the whole objects ``keys``, all opened in one thread hop.

        As with :meth:`open`, nothing is read in the hop but the kernel's
        read-ahead starts, so streaming many small objects one after another (a
        series retrieve) costs one hop per group rather than per object.
        Raises :class:`BlobNotFound` (nothing left open) if any key is missing.
        """
        paths = [(key, self._data_path(key)) for key in keys]
        opened = await self._off_loop(self._open_all, paths)
        return [self._reader(item) for item in opened]

    async def _off_loop(self, opener: Callable[..., _Opened], *args: Any) -> _Opened:
        """Run ``opener`` in a worker thread; what it opens is closed if the caller leaves."""
        work = asyncio.ensure_future(asyncio.to_thread(opener, *args))
        try:
            with map_os_errors():
                return await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(_close_abandoned)
            raise

    def _reader(self, opened: _OpenedRange) -> BlobReader:
        fd, size, first, last = opened
        lane = ThreadLane()

        async def close() -> None:
            await lane.settle()
            os.close(fd)

        chunks = self._read_chunks(lane, fd, first, last)
        return BlobReader(
            size=size, start=first, end=last, chunks=chunks, on_close=close, descriptor=fd
        )

    def _open_all(self, paths: builtins.list[tuple[str, str]]) -> builtins.list[_OpenedRange]:
        opened: builtins.list[_OpenedRange] = []
        try:
            for key, path in paths:
                opened.append(self._open_range(key, path, 0, None))
        except BaseException:
            _close_opened(opened)
            raise
        return opened

    def _open_range(self, key: str, path: str, start: int, end: int | None) -> _OpenedRange:
        """Open the object, resolve the range and start reading it ahead."""
        fd, size = self._open_data(key, path)
        try:
            first, last = resolve_range(size, start, end)
        except BaseException:
            os.close(fd)
            raise
        _read_ahead(fd, first, last)
        return fd, size, first, last

    @staticmethod
    def _open_data(key: str, path: str) -> tuple[int, int]:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except _MISSING:
            raise BlobNotFound(f"no blob {key!r}") from None
        try:
            return fd, os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise

    async def _read_chunks(
        self, lane: ThreadLane, fd: int, start: int, end: int
    ) -> AsyncIterator[Chunk]:
        """``[start, end)`` chunk by chunk, each read straight into its own buffer:
        from the page cache on the event loop when it is there, the missing part
        in a worker thread."""
        position = start
        while position < end:
            wanted = min(self._chunk, end - position)
            buffer = _unfilled(wanted)
            got = self._cached.read_into(fd, buffer, position)
            if got < wanted:
                with map_os_errors():
                    got += await lane.run(_read_into, fd, buffer[got:], position + got)
                if got < wanted:
                    raise DependencyUnavailable("blob file ended before its recorded size")
            position += wanted
            yield buffer

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        reader = await self.open(key, start, end)
        return await reader.read_all()

    async def head(self, key: str) -> BlobInfo:
        stem = self._stem(key)
        with map_os_errors():
            info = await asyncio.to_thread(self._stat, key, stem, None)
        if info is None:
            raise BlobNotFound(f"no blob {key!r}")
        return info

    @staticmethod
    def _stat(key: str, stem: Path, has_class: bool | None) -> BlobInfo | None:
        """Metadata of ``stem``'s object, or ``None`` if it is missing."""
        try:
            stat = stem.with_name(stem.name + DATA_SUFFIX).stat()
        except _MISSING:
            return None
        storage_class = None
        if has_class is not False:
            try:
                raw = stem.with_name(stem.name + CLASS_SUFFIX).read_bytes()
                storage_class = raw.decode("ascii").strip() or None
            except _MISSING:
                storage_class = None
        modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        return BlobInfo(key=key, size=stat.st_size, storage_class=storage_class, modified=modified)

    async def delete(self, key: str) -> None:
        stem = self._stem(key)
        with map_os_errors():
            await asyncio.to_thread(self._unlink, stem)

    def _unlink(self, stem: Path) -> None:
        # A writer killed mid-put leaves its temp file; deleting the key (as the
        # sweeper does for an unfinished upload) removes that debris too.
        with contextlib.suppress(*_MISSING):
            for leftover in stem.parent.glob(glob.escape(stem.name) + TEMP_MARKER + "*"):
                leftover.unlink(missing_ok=True)
        try:
            stem.with_name(stem.name + DATA_SUFFIX).unlink()
        except _MISSING:
            return
        stem.with_name(stem.name + CLASS_SUFFIX).unlink(missing_ok=True)
        if self._fsync:
            fsync_dir(stem.parent)

    async def set_storage_class(self, key: str, storage_class: str) -> None:
        stem = self._stem(key)
        validate_storage_class(storage_class)
        with map_os_errors():
            await asyncio.to_thread(self._relabel, key, stem, storage_class)

    def _relabel(self, key: str, stem: Path, storage_class: str) -> None:
        if not stem.with_name(stem.name + DATA_SUFFIX).is_file():
            raise BlobNotFound(f"no blob {key!r}")
        self._write_class(os.fspath(stem), storage_class)
        if self._fsync:
            fsync_dir(stem.parent)

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Walk the tree in a worker thread, a batch of entries per hop."""
        walk = self._walk(validate_prefix(prefix))
        try:
            while True:
                with map_os_errors():
                    batch = await asyncio.to_thread(next, walk, None)
                if batch is None:
                    return
                for info in batch:
                    yield info
        finally:
            if inspect.getgeneratorstate(walk) != inspect.GEN_RUNNING:
                walk.close()

    def _walk(self, prefix: str) -> Generator[builtins.list[BlobInfo], None, None]:
        base, _, partial = prefix.rpartition("/")
        pending: builtins.list[tuple[Path, str, str]] = [
            (self._root / base if base else self._root, base, partial)
        ]
        batch: builtins.list[BlobInfo] = []
        while pending:
            directory, relative, must_start = pending.pop()
            for item in self._scan(directory, relative, must_start, pending):
                batch.append(item)
                if len(batch) >= LIST_BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _scan(
        self,
        directory: Path,
        relative: str,
        must_start: str,
        pending: builtins.list[tuple[Path, str, str]],
    ) -> Iterator[BlobInfo]:
        """Objects directly in ``directory``; its subdirectories go to ``pending``."""
        try:
            with os.scandir(directory) as scan:
                entries = builtins.list(scan)
        except _MISSING:
            return
        names = {entry.name for entry in entries}
        for entry in entries:
            if not entry.name.startswith(must_start):
                continue
            child = f"{relative}/{entry.name}" if relative else entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append((Path(entry.path), child, ""))
            elif entry.name.endswith(DATA_SUFFIX):
                key = child.removesuffix(DATA_SUFFIX)
                if not KEY_PATTERN.fullmatch(key):
                    continue
                stem = directory / entry.name.removesuffix(DATA_SUFFIX)
                has_class = stem.name + CLASS_SUFFIX in names
                info = self._stat(key, stem, has_class)
                if info is not None:
                    yield info

    async def ping(self) -> None:
        ok = await asyncio.to_thread(self._usable)
        if not ok:
            raise DependencyUnavailable(f"blob root {self._root.name!r} is missing or not writable")

    def _usable(self) -> bool:
        return self._root.is_dir() and os.access(self._root, os.W_OK | os.X_OK)

    async def aclose(self) -> None:
        """Nothing to release: files are opened per call."""

    async def __aenter__(self) -> FilesystemBlobStore:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
