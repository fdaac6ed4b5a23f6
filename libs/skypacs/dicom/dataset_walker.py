"""An incremental, byte-level walk over an encoded data set (PS3.5 section 7).

The walker sees the data set bytes as they arrive and decides, element by
element, what to keep. It keeps the header (everything but large binary values)
as a valid encoded data set for pydicom to parse, and replaces the top-level
Pixel Data and other large binary values by empty elements of the same tag and
VR, recording where their values lie instead. It decodes no values itself: it
only follows lengths, items and delimiters far enough to find where each
top-level element ends.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Final

from pydicom.datadict import dictionary_VR

from skypacs.dicom.frame_layout import ByteRange
from skypacs.dicom.parse_errors import DicomParseError

UNDEFINED_LENGTH: Final = 0xFFFFFFFF
ITEM: Final = 0xFFFEE000
ITEM_DELIMITER: Final = 0xFFFEE00D
SEQUENCE_DELIMITER: Final = 0xFFFEE0DD
PIXEL_TAGS: Final = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
EXTENDED_OFFSET_TAGS: Final = frozenset({0x7FE00001, 0x7FE00002})
#: PS3.5 Table 7.1-1: VRs whose explicit encoding has a 4-byte length.
LONG_VRS: Final = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
SHORT_VRS: Final = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split()
)
BULK_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NATIVE_PIXEL_VR: Final = {0x7FE00010: "OW", 0x7FE00008: "OF", 0x7FE00009: "OD"}
#: Group, element, VR and 2-byte length of an explicit VR little endian element.
_PLAIN_HEADER: Final = struct.Struct("<HH2sH")


class _Level(Enum):
    DATASET = auto()
    ITEMS = auto()
    FRAGMENTS = auto()


class _Sink(Enum):
    HEADER = auto()
    DISCARD = auto()
    CAPTURE = auto()


@dataclass(slots=True)
class _Frame:
    level: _Level
    implicit: bool
    little: bool
    checked: bool = False


@dataclass(slots=True)
class _Header:
    tag: int
    vr: bytes | None
    length: int
    size: int
    length_at: int


@dataclass(slots=True)
class PixelElement:
    """The top-level pixel data element as found in the stream."""

    tag: int
    vr: str
    element_offset: int
    value_offset: int
    value_length: int | None
    fragments: list[ByteRange] = field(default_factory=list)
    basic_offset_table: bytes | None = None


def tag_key(tag: int) -> str:
    """A tag as the 8 uppercase hex digits used in DICOM JSON."""
    return f"{tag:08X}"


def _is_bulk_vr(tag: int, vr: bytes | None) -> bool:
    if vr is not None:
        return vr.decode("ascii") in BULK_VRS
    try:
        candidates = dictionary_VR(tag).split(" or ")
    except KeyError:
        return True
    return any(candidate in BULK_VRS for candidate in candidates)


class DatasetWalker:
    """Follows one data set's encoding as its bytes arrive, in any chunking."""

    def __init__(
        self,
        *,
        implicit: bool,
        little: bool,
        base_offset: int,
        bulk_threshold: int,
        header_limit: int,
        strip_bulk: bool,
    ) -> None:
        self.header = bytearray()
        self.pixel: PixelElement | None = None
        self.bulk_ranges: dict[str, ByteRange] = {}
        self.captured: dict[str, bytes] = {}
        self._stack = [_Frame(_Level.DATASET, implicit, little)]
        self._pos = base_offset
        self._pending = b""
        self._skip = 0
        self._at = 0
        self._sink = _Sink.HEADER
        self._capture = bytearray()
        self._capture_key = ""
        self._bulk_threshold = bulk_threshold
        self._header_limit = header_limit
        self._strip_bulk = strip_bulk

    def feed(self, data: bytes | memoryview) -> None:
        """Walk the next bytes of the data set (not kept: a view may be passed)."""
        if self._pending:
            data = self._pending + data
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                step = self._plain_run(view, done) or self._step(view, done)
                if step == 0:
                    break
                done += step
        finally:
            self._pos += done
            self._pending = bytes(view[done:])
            view.release()

    def finish(self) -> None:
        """Check that the data set ended on an element boundary."""
        if self._skip:
            raise DicomParseError(f"data ends {self._skip} bytes before the end of a value")
        if self._pending:
            raise DicomParseError("data ends inside an element header")
        if len(self._stack) > 1:
            what = "pixel data" if self._stack[-1].level is _Level.FRAGMENTS else "sequence"
            raise DicomParseError(f"data ends inside an undefined-length {what}")

    def _plain_run(self, view: memoryview, at: int) -> int:
        """Keep, as they are, the whole top-level elements with a 2-byte length in
        explicit VR little endian that start at ``at``; return their size.

        Most header elements are such; :meth:`_step` handles the rest (and
        every element it would treat apart: items, pixel data).
        """
        if self._skip or len(self._stack) != 1:
            return 0
        frame = self._stack[0]
        if frame.implicit or not frame.little or not frame.checked:
            return 0
        end = len(view)
        position = at
        while end - position >= 8:
            group, element, vr, length = _PLAIN_HEADER.unpack_from(view, position)
            if (
                group == 0xFFFE
                or vr not in SHORT_VRS
                or end - position < 8 + length
                or group << 16 | element in PIXEL_TAGS
            ):
                break
            position += 8 + length
        if position > at:
            self._keep(view[at:position])
        return position - at

    def _step(self, view: memoryview, at: int) -> int:
        """Consume one piece from ``view[at:]``; return its size, 0 if more is needed."""
        self._at = at
        if self._skip:
            return self._route(view[at : at + self._skip])
        header = self._read_header(view, at)
        if header is None:
            return 0
        frame = self._stack[-1]
        raw = view[at : at + header.size]
        if frame.level is _Level.DATASET:
            self._on_element(header, raw)
        elif frame.level is _Level.ITEMS:
            self._on_item(header, raw)
        else:
            self._on_fragment(header)
        return header.size

    def _read_header(self, view: memoryview, at: int) -> _Header | None:
        if len(view) - at < 8:
            return None
        frame = self._stack[-1]
        order = "<" if frame.little else ">"
        group, element = struct.unpack_from(f"{order}HH", view, at)
        tag = group << 16 | element
        if frame.level is _Level.DATASET and not frame.checked and group != 0xFFFE:
            self._check_vr_encoding(frame, view[at + 4 : at + 6])
        if group == 0xFFFE or frame.implicit or frame.level is not _Level.DATASET:
            (length,) = struct.unpack_from(f"{order}L", view, at + 4)
            return _Header(tag, None, length, 8, 4)
        vr = bytes(view[at + 4 : at + 6])
        if vr in LONG_VRS:
            if len(view) - at < 12:
                return None
            (length,) = struct.unpack_from(f"{order}L", view, at + 8)
            return _Header(tag, vr, length, 12, 8)
        if vr in SHORT_VRS:
            (length,) = struct.unpack_from(f"{order}H", view, at + 6)
            return _Header(tag, vr, length, 8, 6)
        raise DicomParseError(f"invalid VR {vr!r} for ({group:04X},{element:04X})")

    def _check_vr_encoding(self, frame: _Frame, vr: memoryview) -> None:
        """Follow the encoding actually used, as pydicom's reader does.

        Some writers encode a data set in implicit VR under an explicit transfer
        syntax (or the reverse at top level); items may be implicit inside an
        explicit data set (PS3.5 6.2.2). The first element tells.
        """
        frame.checked = True
        found_implicit = not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)
        if found_implicit and not frame.implicit:
            frame.implicit = True
        elif not found_implicit and frame.implicit and len(self._stack) == 1:
            frame.implicit = False

    @property
    def is_implicit_vr(self) -> bool:
        """Whether the top-level data set turned out to be implicit VR."""
        return self._stack[0].implicit

    def _on_element(self, header: _Header, raw: memoryview) -> None:
        frame = self._stack[-1]
        top = len(self._stack) == 1
        if header.tag >> 16 == 0xFFFE:
            if header.tag == ITEM_DELIMITER and not top:
                self._keep(raw)
                self._stack.pop()
                return
            raise DicomParseError(f"unexpected item tag {tag_key(header.tag)} in a data set")
        if top and header.tag in PIXEL_TAGS and self.pixel is None:
            self._start_pixel_data(header, raw)
        elif top and self._is_bulk(header):
            self._start_bulk(header, raw)
        elif header.length == UNDEFINED_LENGTH:
            self._keep(raw)
            # PS3.5 6.2.2: an undefined-length UN holds implicit VR little endian.
            un = header.vr == b"UN"
            self._stack.append(_Frame(_Level.ITEMS, un or frame.implicit, un or frame.little))
        else:
            self._keep(raw)
            self._expect(header.length, _Sink.HEADER)

    def _on_item(self, header: _Header, raw: memoryview) -> None:
        frame = self._stack[-1]
        if header.tag == SEQUENCE_DELIMITER:
            self._keep(raw)
            self._stack.pop()
        elif header.tag == ITEM:
            self._keep(raw)
            if header.length == UNDEFINED_LENGTH:
                self._stack.append(_Frame(_Level.DATASET, frame.implicit, frame.little))
            else:
                self._expect(header.length, _Sink.HEADER)
        else:
            raise DicomParseError(f"expected an item tag, found {tag_key(header.tag)}")

    def _on_fragment(self, header: _Header) -> None:
        pixel = self.pixel
        assert pixel is not None
        if header.tag == SEQUENCE_DELIMITER:
            self._stack.pop()
        elif header.tag != ITEM or header.length == UNDEFINED_LENGTH:
            raise DicomParseError(f"malformed pixel data item {tag_key(header.tag)}")
        elif pixel.basic_offset_table is None:
            pixel.basic_offset_table = b""
            self._expect(header.length, _Sink.CAPTURE, "offset table")
        else:
            pixel.fragments.append((self._pos_after(header), header.length))
            self._expect(header.length, _Sink.DISCARD)

    def _start_pixel_data(self, header: _Header, raw: memoryview) -> None:
        start = self._pos + self._at
        vr = header.vr.decode("ascii") if header.vr else _NATIVE_PIXEL_VR[header.tag]
        value_length = None if header.length == UNDEFINED_LENGTH else header.length
        self.pixel = PixelElement(header.tag, vr, start, start + header.size, value_length)
        self._keep_placeholder(header, raw)
        if value_length is None:
            self._stack.append(_Frame(_Level.FRAGMENTS, implicit=False, little=True))
        else:
            self._expect(value_length, _Sink.DISCARD)

    def _is_bulk(self, header: _Header) -> bool:
        return (
            self._strip_bulk
            and header.length != UNDEFINED_LENGTH
            and header.length > self._bulk_threshold
            and _is_bulk_vr(header.tag, header.vr)
        )

    def _start_bulk(self, header: _Header, raw: memoryview) -> None:
        key = tag_key(header.tag)
        self.bulk_ranges[key] = (self._pos_after(header), header.length)
        self._keep_placeholder(header, raw)
        if header.tag in EXTENDED_OFFSET_TAGS:
            self._expect(header.length, _Sink.CAPTURE, key)
        else:
            self._expect(header.length, _Sink.DISCARD)

    def _keep_placeholder(self, header: _Header, raw: memoryview) -> None:
        """Keep the element header with a zero length: the value is stored elsewhere."""
        self._keep(raw[: header.length_at])
        self._keep(bytes(header.size - header.length_at))

    def _pos_after(self, header: _Header) -> int:
        """File offset of the value of the header being handled."""
        return self._pos + self._at + header.size

    def _expect(self, length: int, sink: _Sink, capture_key: str = "") -> None:
        self._skip = length
        self._sink = sink
        if sink is _Sink.CAPTURE:
            self._capture = bytearray()
            self._capture_key = capture_key
        if length == 0:
            self._value_done()

    def _route(self, chunk: memoryview) -> int:
        if self._sink is _Sink.HEADER:
            self._keep(chunk)
        elif self._sink is _Sink.CAPTURE:
            self._check_limit(len(chunk))
            self._capture.extend(chunk)
        self._skip -= len(chunk)
        if not self._skip:
            self._value_done()
        return len(chunk)

    def _value_done(self) -> None:
        if self._sink is not _Sink.CAPTURE:
            return
        value = bytes(self._capture)
        self._capture = bytearray()
        if self._capture_key == "offset table" and self.pixel is not None:
            self.pixel.basic_offset_table = value
        else:
            self.captured[self._capture_key] = value
        self._sink = _Sink.HEADER

    def _keep(self, chunk: bytes | memoryview) -> None:
        self._check_limit(len(chunk))
        self.header.extend(chunk)

    def _check_limit(self, extra: int) -> None:
        if len(self.header) + len(self._capture) + extra > self._header_limit:
            raise DicomParseError(f"data set header exceeds the {self._header_limit}-byte limit")
