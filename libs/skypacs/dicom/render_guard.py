"""Checks made before any pixel is decoded for rendering.

The decoded size (rows x columns x samples x bytes per sample x frames held at
once) comes from the Image Pixel attributes of the index, so a decompression
bomb is refused before a byte of it is read. A compressed frame whose own
header (JPEG SOF, JPEG-LS SOF55, JPEG 2000 SIZ) claims more pixels than the data
set declares is refused too: decoders size their output from the codestream.
"""

from __future__ import annotations

import struct
from typing import Final

from skypacs.dicom.transcode import FrameFormat
from skypacs.errors import PayloadTooLarge, SkypacsError


class RenderTooLarge(PayloadTooLarge):
    """The decoded image would exceed the configured limit (413)."""

    title = "image too large to render"


class RenderError(SkypacsError):
    """The stored pixel data cannot be rendered (corrupt or unsupported): 422."""

    status_code = 422
    title = "image cannot be rendered"


#: JPEG start-of-frame markers (PS3.5 A.4.1 codestreams): C0-CF minus DHT, JPG, DAC; F7 is JPEG-LS.
_SOF_MARKERS: Final = frozenset({*range(0xC0, 0xD0), 0xF7}) - {0xC4, 0xC8, 0xCC}
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD9)})


def decoded_frame_bytes(fmt: FrameFormat) -> int:
    """Bytes of one decoded frame: rows x columns x samples x bytes per sample."""
    per_sample = max((fmt.bits_allocated + 7) // 8, 1)
    return fmt.rows * fmt.columns * max(fmt.samples_per_pixel, 1) * per_sample


def check_decoded_size(fmt: FrameFormat, frames_at_once: int, limit: int) -> None:
    """Raise :class:`RenderTooLarge` when ``frames_at_once`` decoded frames exceed ``limit``."""
    if fmt.rows <= 0 or fmt.columns <= 0:
        raise RenderError("the image has no rows or columns")
    total = decoded_frame_bytes(fmt) * max(frames_at_once, 1)
    if total > limit:
        raise RenderTooLarge(
            f"decoding needs {total} bytes ({fmt.rows}x{fmt.columns}, "
            f"{frames_at_once} frame(s)); the limit is {limit}"
        )


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    """``(rows, columns)`` from the first SOF segment of a JPEG/JPEG-LS codestream."""
    position = 2
    while position + 4 <= len(frame):
        if frame[position] != 0xFF:
            return None
        marker = frame[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack_from(">H", frame, position + 2)
        if marker in _SOF_MARKERS:
            if position + 9 > len(frame):
                return None
            rows, columns = struct.unpack_from(">HH", frame, position + 5)
            return int(rows), int(columns)
        if marker == 0xDA:
            return None
        position += 2 + int(length)
    return None


def _j2k_size(frame: bytes) -> tuple[int, int] | None:
    """``(rows, columns)`` from the SIZ segment of a JPEG 2000 codestream."""
    if len(frame) < 4 + 2 + 2 + 16 or frame[2:4] != b"\xff\x51":
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", frame, 8)
    return int(ysiz) - int(yosiz), int(xsiz) - int(xosiz)


def codestream_size(frame: bytes) -> tuple[int, int] | None:
    """Image size a JPEG, JPEG-LS or JPEG 2000 frame declares, None for other data."""
    if frame[:2] == b"\xff\xd8":
        return _jpeg_size(frame)
    if frame[:2] == b"\xff\x4f":
        return _j2k_size(frame)
    return None


def check_codestream(frame: bytes, fmt: FrameFormat) -> None:
    """Raise :class:`RenderError` when the frame's codestream is larger than declared."""
    size = codestream_size(frame)
    if size is None:
        return
    rows, columns = size
    if rows > fmt.rows or columns > fmt.columns:
        raise RenderError(
            f"the frame's codestream is {rows}x{columns}, "
            f"larger than the declared {fmt.rows}x{fmt.columns}"
        )
