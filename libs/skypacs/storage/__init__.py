"""Blob storage: the :class:`BlobStore` protocol and its filesystem and S3 backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from skypacs.config import Settings
from skypacs.storage.base import (
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    Chunk,
    InvalidRange,
    PutResult,
    resolve_range,
    validate_key,
    validate_prefix,
)
from skypacs.storage.filesystem import FilesystemBlobStore

if TYPE_CHECKING:
    from skypacs.storage.s3 import S3BlobStore

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "Chunk",
    "FilesystemBlobStore",
    "InvalidRange",
    "PutResult",
    "S3BlobStore",
    "open_blob_store",
    "resolve_range",
    "validate_key",
    "validate_prefix",
]


def __getattr__(name: str) -> Any:
    """``S3BlobStore`` on first use: its client library is big and often not needed."""
    if name == "S3BlobStore":
        from skypacs.storage.s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_blob_store(settings: Settings) -> AbstractAsyncContextManager[BlobStore]:
    """The configured blob store, opened on enter and closed on exit.

    The filesystem backend keeps blobs under ``settings.blob_root`` (created if
    missing); the S3 backend keeps one client open for the store's lifetime.
    """
    return _opened(settings)


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[BlobStore]:
    storage = settings.storage
    store: BlobStore
    if storage.backend == "s3":
        from skypacs.storage.s3 import S3BlobStore

        store = await S3BlobStore.connect(storage.s3, read_chunk_bytes=storage.read_chunk_bytes)
    else:
        root = settings.blob_root
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        store = FilesystemBlobStore(
            root, fsync=storage.filesystem.fsync, read_chunk_bytes=storage.read_chunk_bytes
        )
    try:
        yield store
    finally:
        await store.aclose()
