"""Where each frame of the Pixel Data lives in the stored file.

Native pixel data (PS3.5 8.1) holds frames back to back, so their ranges follow
from the image geometry. Encapsulated pixel data (PS3.5 A.4) is a sequence of
fragment items; fragments are grouped into frames by count or by the Basic or
Extended Offset Table. When none of these settles it, the frames are unknown and
readers must decode the whole value instead.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass

ByteRange = tuple[int, int]
"""(offset in the file, length in bytes)."""

FrameRanges = list[list[ByteRange]]
"""Per frame, the byte ranges of its fragment payloads (one range when native)."""

ITEM_HEADER_LENGTH = 8


@dataclass(frozen=True, slots=True)
class PixelDataLayout:
    """The top-level Pixel Data element of a scanned instance.

    ``element_offset`` is where the element's tag starts, ``value_offset`` where its
    value starts (for encapsulated data: the Basic Offset Table item tag).
    ``frames`` is None when frame boundaries are unknown; ``unaligned_frames``
    flags single-bit frames that do not start on a byte boundary, in which case
    the whole value must be read and unpacked.
    """

    tag: str
    vr: str
    element_offset: int
    value_offset: int
    value_length: int | None
    is_encapsulated: bool
    number_of_frames: int
    frames: FrameRanges | None
    fragments: list[ByteRange]
    has_basic_offset_table: bool
    unaligned_frames: bool = False


@dataclass(frozen=True, slots=True)
class ImageGeometry:
    """The Image Pixel attributes (PS3.3 C.7.6.3) that size a native frame."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    photometric_interpretation: str = ""

    def frame_bits(self) -> int:
        """Bits per native frame; YBR_FULL_422 stores two samples per pixel."""
        bits = self.rows * self.columns * self.samples_per_pixel * self.bits_allocated
        if self.photometric_interpretation == "YBR_FULL_422":
            return bits // 3 * 2
        return bits


def native_frames(
    value_offset: int, value_length: int, frame_count: int, geometry: ImageGeometry
) -> tuple[FrameRanges | None, bool]:
    """Frame ranges of native pixel data and whether frames are bit-unaligned.

    Returns (None, False) when the value is too short for the declared frames.
    """
    bits = geometry.frame_bits()
    if bits <= 0:
        return None, False
    if bits % 8:
        return None, True
    size = bits // 8
    if size * frame_count > value_length:
        return None, False
    return [[(value_offset + k * size, size)] for k in range(frame_count)], False


def parse_offset_table(value: bytes, item_size: int) -> list[int]:
    """Unsigned little-endian offsets of a Basic (4-byte) or Extended (8-byte) table."""
    count = len(value) // item_size
    code = "L" if item_size == 4 else "Q"
    return list(struct.unpack_from(f"<{count}{code}", value))


def encapsulated_frames(
    fragments: Sequence[ByteRange], frame_count: int, offsets: Sequence[int] | None
) -> FrameRanges | None:
    """Group fragment payload ranges into frames (PS3.5 A.4).

    ``offsets`` are Basic or Extended Offset Table values: the distance from the
    first fragment's item tag to each frame's first item tag.
    """
    if frame_count == 0:
        return []
    if not fragments:
        return None
    if frame_count == 1:
        return [list(fragments)]
    if len(fragments) == frame_count:
        return [[fragment] for fragment in fragments]
    if offsets is None or len(offsets) != frame_count:
        return None
    return _split_by_offsets(fragments, offsets)


def _split_by_offsets(fragments: Sequence[ByteRange], offsets: Sequence[int]) -> FrameRanges | None:
    first_item = fragments[0][0] - ITEM_HEADER_LENGTH
    index_of = {
        offset - ITEM_HEADER_LENGTH - first_item: index
        for index, (offset, _) in enumerate(fragments)
    }
    starts = [index_of.get(offset) for offset in offsets]
    if starts[0] != 0 or any(start is None for start in starts):
        return None
    bounds = [start for start in starts if start is not None] + [len(fragments)]
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        return None
    return [list(fragments[a:b]) for a, b in itertools.pairwise(bounds)]
