"""Describe a scanned Pixel Data element with the image attributes around it."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from skypacs.dicom.dataset_walker import PixelElement, tag_key
from skypacs.dicom.frame_layout import (
    FrameRanges,
    ImageGeometry,
    PixelDataLayout,
    encapsulated_frames,
    native_frames,
    parse_offset_table,
)
from skypacs.dicom.plain_values import keyword_tag, plain_element, plain_integer, plain_text


def int_attribute(ds: Dataset, keyword: str) -> int | None:
    """An integer attribute, or None when absent or malformed."""
    tag = keyword_tag(keyword)
    if tag not in ds:
        return None
    plain = plain_element(ds, tag)
    if plain is not None:
        return plain_integer(plain[1])
    try:
        value: Any = ds.get(keyword)
        if value is None or value == "":
            return None
        number = float(value)
        return int(number) if number.is_integer() else None
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None


def frame_count(ds: Dataset) -> int:
    """Number of Frames (0028,0008), 1 when absent (PS3.3 C.7.6.6)."""
    count = int_attribute(ds, "NumberOfFrames")
    return 1 if count is None or count < 0 else count


def image_geometry(ds: Dataset) -> ImageGeometry | None:
    """The Image Pixel attributes that size a frame, None if any is missing."""
    rows = int_attribute(ds, "Rows")
    columns = int_attribute(ds, "Columns")
    bits = int_attribute(ds, "BitsAllocated")
    samples = int_attribute(ds, "SamplesPerPixel")
    if rows is None or columns is None or bits is None:
        return None
    return ImageGeometry(rows, columns, samples or 1, bits, _photometric(ds))


def _photometric(ds: Dataset) -> str:
    plain = plain_element(ds, keyword_tag("PhotometricInterpretation"))
    if plain is not None:
        return plain_text(plain[1]).strip()
    try:
        return str(ds.get("PhotometricInterpretation", "") or "").strip()
    except (TypeError, ValueError):
        return ""


def describe_pixel_data(
    pixel: PixelElement, ds: Dataset, captured: dict[str, bytes], *, addressable: bool
) -> PixelDataLayout:
    """Build the layout of ``pixel``; frames are None when not addressable."""
    count = frame_count(ds)
    encapsulated = pixel.value_length is None
    frames: FrameRanges | None = None
    unaligned = False
    if addressable and encapsulated:
        frames = encapsulated_frames(pixel.fragments, count, _frame_offsets(pixel, ds, captured))
    elif addressable and pixel.value_length is not None:
        geometry = image_geometry(ds)
        if geometry is not None:
            frames, unaligned = native_frames(
                pixel.value_offset, pixel.value_length, count, geometry
            )
    return PixelDataLayout(
        tag=tag_key(pixel.tag),
        vr=pixel.vr,
        element_offset=pixel.element_offset,
        value_offset=pixel.value_offset,
        value_length=pixel.value_length,
        is_encapsulated=encapsulated,
        number_of_frames=count,
        frames=frames,
        fragments=list(pixel.fragments),
        has_basic_offset_table=bool(pixel.basic_offset_table),
        unaligned_frames=unaligned,
    )


def _frame_offsets(
    pixel: PixelElement, ds: Dataset, captured: dict[str, bytes]
) -> list[int] | None:
    """Basic Offset Table, else Extended Offset Table (7FE0,0001), else None."""
    if pixel.basic_offset_table:
        return parse_offset_table(pixel.basic_offset_table, 4)
    extended = captured.get("7FE00001")
    if extended is None:
        element = ds.get(0x7FE00001)
        extended = element.value if element is not None and element.value else None
    if not extended:
        return None
    return parse_offset_table(bytes(extended), 8)
