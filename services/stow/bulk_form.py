"""STOW-RS metadata and bulk data form (PS3.18 §10.5.1.2.2).

The request carries DICOM JSON data sets (``application/dicom+json`` parts) whose
``BulkDataURI`` values name other parts by their Content-Location. Bulk parts are
spooled to a private temporary directory as they arrive; once the body is read,
each data set is assembled into a Part 10 file there (off the event loop) and
stored through the same pipeline as a native Part 10 upload.

Pixel data arrives either native (``application/octet-stream``, stored as
Explicit VR Little Endian) or as one compressed frame whose media type carries
the ``transfer-syntax`` parameter (stored encapsulated in that syntax).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, ExplicitVRLittleEndian

from skypacs.config import Settings
from skypacs.dicom.transfer_syntaxes import get_transfer_syntax
from skypacs.dicom.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from skypacs.dicomweb.media_types import APPLICATION_DICOM_JSON, APPLICATION_OCTET_STREAM
from skypacs.dicomweb.multipart import Part
from skypacs.dicomweb.status import FailureReason
from skypacs.errors import BadRequest
from skypacs.ingest.pipeline import Ingestor, StoreOutcome

PIXEL_DATA = 0x7FE00010
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BulkPart:
    path: Path
    transfer_syntax: str | None
    compressed: bool


class AssemblyError(Exception):
    """A data set of the request cannot be turned into a Part 10 instance."""


async def _spool(part: Part, path: Path) -> None:
    handle = await asyncio.to_thread(path.open, "wb")
    try:
        async for chunk in part.chunks():
            await asyncio.to_thread(handle.write, chunk)
    finally:
        await asyncio.to_thread(handle.close)


def _bulk_part(part: Part, path: Path) -> BulkPart:
    media = part.content_type or APPLICATION_OCTET_STREAM
    syntax = media.param("transfer-syntax")
    compressed = not media.same_essence(APPLICATION_OCTET_STREAM)
    return BulkPart(path=path, transfer_syntax=syntax, compressed=compressed)


def _json_datasets(raw: bytes) -> list[dict[str, Any]]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("metadata part is not valid JSON") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(item, dict) for item in items):
        raise BadRequest("metadata part must hold DICOM JSON data set objects")
    return items


async def _collect(
    parts: AsyncIterator[Part], workdir: Path, settings: Settings
) -> tuple[list[dict[str, Any]], dict[str, BulkPart]]:
    datasets: list[dict[str, Any]] = []
    bulk: dict[str, BulkPart] = {}
    async for part in parts:
        media = part.content_type
        if media is not None and media.same_essence(APPLICATION_DICOM_JSON):
            raw = await part.read(settings.stow.max_metadata_json_bytes)
            datasets.extend(_json_datasets(raw))
        elif part.content_location:
            path = workdir / f"bulk-{len(bulk)}"
            await _spool(part, path)
            bulk[part.content_location] = _bulk_part(part, path)
        else:
            await part.drain()  # unreferenced: nothing could point at it
    return datasets, bulk


def _lookup(bulk: dict[str, BulkPart], uri: str) -> BulkPart:
    if uri in bulk:
        return bulk[uri]
    for location, found in bulk.items():  # relative references
        if uri.endswith(location) or location.endswith(uri):
            return found
    raise AssemblyError(f"BulkDataURI {uri!r} names no part of the request")


def _assemble(item: dict[str, Any], bulk: dict[str, BulkPart], out: Path) -> None:
    """Build and write the Part 10 file for one DICOM JSON data set (blocking)."""
    pixel: list[BulkPart] = []

    def resolve(tag: str, _vr: str, uri: str) -> bytes:
        found = _lookup(bulk, uri)
        if int(tag, 16) == PIXEL_DATA:
            pixel.append(found)
        return found.path.read_bytes()

    try:
        ds = Dataset.from_json(item, bulk_data_uri_handler=resolve)
    except (ValueError, KeyError, TypeError) as exc:
        raise AssemblyError(f"invalid DICOM JSON: {exc}") from None
    syntax = str(ExplicitVRLittleEndian)
    if pixel and pixel[0].compressed:
        syntax = _compressed_syntax(ds, pixel[0])
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
    ds.file_meta = _file_meta(ds, syntax)
    try:
        dcmwrite(out, ds, enforce_file_format=True)
    except (ValueError, AttributeError, TypeError) as exc:
        raise AssemblyError(f"cannot encode data set: {exc}") from None


def _compressed_syntax(ds: Dataset, part: BulkPart) -> str:
    known = get_transfer_syntax(part.transfer_syntax or "")
    if known is None or not known.is_encapsulated:
        raise AssemblyError("compressed pixel data part needs a transfer-syntax parameter")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise AssemblyError("multi-frame compressed pixel data must be sent as a Part 10 instance")
    return known.uid


def _file_meta(ds: Dataset, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


def _uid_of(item: dict[str, Any], tag: str) -> str | None:
    value = item.get(tag, {}).get("Value") if isinstance(item.get(tag), dict) else None
    return str(value[0]) if isinstance(value, list) and value else None


async def store_metadata_and_bulk(
    ingestor: Ingestor, parts: AsyncIterator[Part], settings: Settings, study: str | None
) -> list[StoreOutcome]:
    """Store every data set of a metadata + bulk data request."""
    with tempfile.TemporaryDirectory(prefix="skypacs-stow-") as tmp:
        workdir = Path(tmp)
        datasets, bulk = await _collect(parts, workdir, settings)
        outcomes = []
        for number, item in enumerate(datasets):
            out = workdir / f"instance-{number}.dcm"
            try:
                await asyncio.to_thread(_assemble, item, bulk, out)
            except AssemblyError as exc:
                outcomes.append(
                    StoreOutcome(
                        sop_class_uid=_uid_of(item, "00080016"),
                        sop_instance_uid=_uid_of(item, "00080018"),
                        failure=FailureReason.CANNOT_UNDERSTAND,
                        detail=str(exc),
                    )
                )
                continue
            outcomes.append(await ingestor.store(_file_chunks(out), expected_study=study))
        return outcomes
