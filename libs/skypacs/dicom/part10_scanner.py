"""Incremental scanning of an uploaded DICOM Part 10 file (PS3.10 section 7).

:class:`Part10Scanner` sees the upload chunk by chunk, hands back the bytes to
store (with the 128-byte preamble zeroed against CVE-2019-11687 polyglots) and
keeps in memory only the file meta information and the data set header. Pixel
Data and other large binary values are not buffered: their byte ranges in the
stored file are recorded instead, with per-frame ranges for ranged frame reads.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any, Final

from pydicom.dataset import Dataset, FileMetaDataset

from skypacs.dicom.dataset_walker import LONG_VRS, SHORT_VRS, DatasetWalker, tag_key
from skypacs.dicom.frame_layout import ByteRange, PixelDataLayout
from skypacs.dicom.parse_errors import DicomParseError
from skypacs.dicom.pixel_layout import describe_pixel_data
from skypacs.dicom.raw_elements import read_data_set
from skypacs.dicom.transfer_syntaxes import get_transfer_syntax

MIB: Final = 1024 * 1024
PREAMBLE_LENGTH: Final = 128
MAGIC: Final = b"DICM"
META_START: Final = PREAMBLE_LENGTH + len(MAGIC)
_TRANSFER_SYNTAX_TAG: Final = 0x00020010
_INFLATE_STEP: Final = 1 * MIB


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What ingest needs to know about one stored Part 10 file.

    ``dataset`` holds every element of the data set; the top-level Pixel Data and
    the values listed in ``bulk_ranges`` are present with an empty value (their
    tag and VR kept for DICOM JSON), their bytes being in the stored file at the
    recorded ``(offset, length)``. ``header_length`` is the offset of the Pixel
    Data element (the file size when there is none). For the deflated transfer
    syntax offsets refer to the inflated data set, frames are None and large
    values stay in ``dataset``.
    """

    file_meta: FileMetaDataset
    dataset: Dataset
    transfer_syntax_uid: str
    size: int
    header_length: int
    pixel_data: PixelDataLayout | None
    bulk_ranges: dict[str, ByteRange]


class Part10Scanner:
    """Streams one Part 10 file: ``feed`` every chunk, then ``finish``."""

    def __init__(self, max_header_bytes: int = 64 * MIB, bulk_threshold: int = 1024) -> None:
        self._limit = max_header_bytes
        self._bulk_threshold = bulk_threshold
        self._size = 0
        self._head = bytearray()
        self._meta_end: int | None = None
        self._meta_pos = META_START
        self._transfer_syntax = ""
        self._meta_bytes = b""
        self._walker: DatasetWalker | None = None
        self._inflater: Any = None
        self._finished = False
        self._parsed: tuple[int, FileMetaDataset, Dataset] | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Scan the next chunk; return it as it must be stored (preamble zeroed)."""
        if self._finished:
            raise RuntimeError("feed() called after finish()")
        out = self._zero_preamble(bytes(chunk))
        self._size += len(chunk)
        if self._walker is None:
            self._feed_meta(chunk)
        else:
            self._feed_dataset(chunk)
        return out

    def finish(self) -> ScanResult:
        """Check the file is complete and describe it; raises DicomParseError."""
        self._finished = True
        if self._walker is None:
            self._end_meta_at_eof()
        walker = self._walker
        assert walker is not None
        if self._inflater is not None:
            self._flush_inflater(walker)
        walker.finish()
        return self._result(walker)

    @property
    def transfer_syntax_uid(self) -> str:
        """The Transfer Syntax UID of the file meta; empty until the meta is read."""
        return self._transfer_syntax

    @property
    def header_complete(self) -> bool:
        """True once the data set up to Pixel Data has been seen.

        From then on :meth:`peek_dataset` can tell the instance's UIDs before the
        pixel data has arrived. Without Pixel Data the header ends with the file.
        """
        return self._walker is not None and self._walker.pixel is not None

    @property
    def expected_size(self) -> int | None:
        """The file size the header foretells, once it is complete: the end of a
        Pixel Data value of defined length. None when unknown (no header yet,
        encapsulated or deflated data, no Pixel Data)."""
        walker = self._walker
        pixel = walker.pixel if walker is not None else None
        if pixel is None or pixel.value_length is None or self._inflater is not None:
            return None
        return pixel.value_offset + pixel.value_length

    def peek_dataset(self) -> Dataset:
        """The data set as parsed so far (everything before Pixel Data)."""
        walker = self._walker
        if walker is None or walker.pixel is None:
            raise RuntimeError("peek_dataset() before the header is complete")
        return self._parse(walker)[1]

    def _zero_preamble(self, chunk: bytes) -> bytes:
        if self._size >= PREAMBLE_LENGTH:
            return chunk
        zeros = min(PREAMBLE_LENGTH - self._size, len(chunk))
        return b"".join((bytes(zeros), memoryview(chunk)[zeros:]))  # one copy

    def _feed_meta(self, chunk: bytes) -> None:
        self._head.extend(chunk)
        if len(self._head) < META_START:
            return
        if self._head[PREAMBLE_LENGTH:META_START] != MAGIC:
            raise DicomParseError("missing Part 10 preamble/meta: no 'DICM' prefix")
        while self._walker is None and self._next_meta_element():
            pass
        if self._walker is None and len(self._head) > self._limit:
            raise DicomParseError(f"file meta information exceeds {self._limit} bytes")

    def _next_meta_element(self) -> bool:
        """Consume one group 0002 element (always explicit VR little endian)."""
        head, at = self._head, self._meta_pos
        if len(head) - at < 8:
            return False
        group, element = struct.unpack_from("<HH", head, at)
        if group != 0x0002:
            self._start_dataset()
            return False
        vr = bytes(head[at + 4 : at + 6])
        if vr in LONG_VRS:
            if len(head) - at < 12:
                return False
            (length,) = struct.unpack_from("<L", head, at + 8)
            size = 12
        elif vr in SHORT_VRS:
            (length,) = struct.unpack_from("<H", head, at + 6)
            size = 8
        else:
            raise DicomParseError(f"invalid VR {vr!r} in file meta (0002,{element:04X})")
        if length == 0xFFFFFFFF:
            raise DicomParseError("undefined length in file meta information")
        if len(head) - at < size + length:
            return False
        if group << 16 | element == _TRANSFER_SYNTAX_TAG:
            value = bytes(head[at + size : at + size + length])
            self._transfer_syntax = value.decode("ascii", "replace").rstrip("\x00 ")
        self._meta_pos = at + size + length
        return True

    def _end_meta_at_eof(self) -> None:
        head = self._head
        if len(head) < META_START:
            raise DicomParseError("missing Part 10 preamble/meta: file too short")
        rest = len(head) - self._meta_pos
        if rest >= 8 or (rest >= 2 and head[self._meta_pos : self._meta_pos + 2] == b"\x02\x00"):
            raise DicomParseError("file ends inside the file meta information")
        self._start_dataset()

    def _start_dataset(self) -> None:
        """The meta group has ended: set up the walk of the data set proper."""
        if not self._transfer_syntax:
            raise DicomParseError("file meta lacks Transfer Syntax UID (0002,0010)")
        syntax = get_transfer_syntax(self._transfer_syntax)
        implicit = syntax.is_implicit_vr if syntax else False
        little = syntax.is_little_endian if syntax else True
        deflated = syntax.is_deflated if syntax else False
        start = self._meta_pos
        self._meta_bytes = bytes(self._head[META_START:start])
        head, self._head = self._head, bytearray()
        rest = memoryview(head)[start:]  # walked in place, not copied
        self._meta_end = start
        self._walker = DatasetWalker(
            implicit=implicit,
            little=little,
            base_offset=0 if deflated else start,
            bulk_threshold=self._bulk_threshold,
            header_limit=self._limit,
            strip_bulk=not deflated,
        )
        if deflated:
            # PS3.5 A.5: the data set after the meta is a raw deflate stream.
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        if rest:
            self._feed_dataset(rest)

    def _feed_dataset(self, data: bytes | memoryview) -> None:
        walker = self._walker
        assert walker is not None
        if self._inflater is None:
            walker.feed(data)
            return
        pending = data
        while pending and not self._inflater.eof:
            try:
                inflated = self._inflater.decompress(pending, _INFLATE_STEP)
            except zlib.error as exc:
                raise DicomParseError(f"deflated data set is corrupt: {exc}") from None
            walker.feed(inflated)
            pending = self._inflater.unconsumed_tail

    def _flush_inflater(self, walker: DatasetWalker) -> None:
        try:
            walker.feed(self._inflater.flush())
        except zlib.error as exc:
            raise DicomParseError(f"deflated data set is corrupt: {exc}") from None
        if not self._inflater.eof:
            raise DicomParseError("deflated data set is truncated")

    def _result(self, walker: DatasetWalker) -> ScanResult:
        file_meta, dataset = self._parse(walker)
        deflated = self._inflater is not None
        pixel = walker.pixel
        layout = (
            None
            if pixel is None
            else describe_pixel_data(pixel, dataset, walker.captured, addressable=not deflated)
        )
        return ScanResult(
            file_meta=file_meta,
            dataset=dataset,
            transfer_syntax_uid=self._transfer_syntax,
            size=self._size,
            header_length=self._size if pixel is None else pixel.element_offset,
            pixel_data=layout,
            bulk_ranges={} if deflated else dict(walker.bulk_ranges),
        )

    def _parse(self, walker: DatasetWalker) -> tuple[FileMetaDataset, Dataset]:
        """Decode the buffered meta and header into pydicom data sets (cached)."""
        if self._parsed is not None and self._parsed[0] == len(walker.header):
            return self._parsed[1], self._parsed[2]
        meta, dataset = self._decode(walker)
        self._parsed = (len(walker.header), meta, dataset)
        return meta, dataset

    def _decode(self, walker: DatasetWalker) -> tuple[FileMetaDataset, Dataset]:
        syntax = get_transfer_syntax(self._transfer_syntax)
        implicit = walker.is_implicit_vr
        little = syntax.is_little_endian if syntax else True
        try:
            meta = FileMetaDataset(read_data_set(self._meta_bytes, implicit=False, little=True))
            dataset = read_data_set(bytes(walker.header), implicit=implicit, little=little)
        except Exception as exc:  # pydicom raises many types on malformed input
            raise DicomParseError(f"cannot decode data set: {exc}") from None
        dataset.file_meta = meta
        dataset.set_original_encoding(implicit, little, dataset._character_set)
        return meta, dataset


__all__ = ["Part10Scanner", "PixelDataLayout", "ScanResult", "tag_key"]
