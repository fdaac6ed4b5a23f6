"""Frames of an instance: the frame list of a request and frames found by parsing.

Frames are normally read by byte range from the offsets recorded at ingest. When
those are unknown (deflated data sets, encapsulated data whose fragments cannot
be mapped to frames, single-bit frames that share bytes) the whole object is
parsed here instead and the frames are cut out in their stored encoding
(PS3.5 §8.1.1 native, A.4 encapsulated). Blocking: run in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from io import BytesIO
from typing import Final

import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import pack_bits

from skypacs.dicom.transfer_syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    get_transfer_syntax,
)
from skypacs.errors import BadRequest, NotFound

_FRAME_LIST: Final = re.compile(r"^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8})*$")


def parse_frame_list(text: str, *, max_frames: int) -> list[int]:
    """Frame numbers (counted from 1) of ``1,2,3``; duplicates kept in order.

    Raises :class:`BadRequest` for a malformed list or one longer than ``max_frames``.
    """
    if _FRAME_LIST.fullmatch(text) is None:
        raise BadRequest("frame list must be frame numbers from 1 separated by commas")
    numbers = [int(piece) for piece in text.split(",")]
    if len(numbers) > max_frames:
        raise BadRequest(f"at most {max_frames} frames may be requested at once")
    return numbers


def check_frame_numbers(numbers: Sequence[int], frame_count: int) -> None:
    """Raise :class:`BadRequest` when a number lies beyond the instance's frames."""
    beyond = [n for n in numbers if n > frame_count]
    if beyond:
        raise BadRequest(f"frame {beyond[0]} does not exist: the instance has {frame_count}")


def extract_frames(data: bytes, numbers: Sequence[int]) -> tuple[str, list[bytes]]:
    """Parse a Part 10 object; its frames' syntax and the requested frames' bytes.

    Frames of a deflated data set are native and labelled Explicit VR Little
    Endian, which is what they are once inflated.
    """
    ds = pydicom.dcmread(BytesIO(data), force=True)
    if "PixelData" not in ds:
        raise NotFound("the instance has no pixel data")
    syntax_uid = str(ds.file_meta.get("TransferSyntaxUID", EXPLICIT_VR_LITTLE_ENDIAN))
    count = int(ds.get("NumberOfFrames", 1) or 1)
    check_frame_numbers(numbers, count)
    syntax = get_transfer_syntax(syntax_uid)
    if syntax is not None and syntax.is_encapsulated:
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        return syntax_uid, [frames[n - 1] for n in numbers]
    label = (
        EXPLICIT_VR_LITTLE_ENDIAN
        if syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        else (syntax_uid)
    )
    bits = int(ds.BitsAllocated) * int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel)
    if bits % 8 == 0:
        size = bits // 8
        value = bytes(ds.PixelData)
        return label, [value[(n - 1) * size : n * size] for n in numbers]
    pixels = np.asarray(ds.pixel_array).reshape(count, -1)
    return label, [pack_bits(pixels[n - 1]) for n in numbers]
