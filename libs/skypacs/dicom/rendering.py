"""The rendering pixel pipeline: one stored frame to a JPEG, PNG or GIF image.

Steps (PS3.18 §8.3.5.1, PS3.3 C.11): decode the frame (reusing the transcoder's
decoders), interpret the native bytes (bits stored, signed data, planar
configuration, single-bit and YBR_FULL_422 layouts), then for grayscale apply the
Modality LUT (Rescale Slope/Intercept, the Modality LUT Sequence, or the
functional groups of enhanced objects), the VOI (the requested window, else the
data set's VOI LUT Sequence, else its first window, else the frame's range) and
invert MONOCHROME1; colour is converted from YBR or the palette to RGB. Then the
viewport crops and scales (keeping the aspect ratio) and Pillow encodes.
Annotations are not burned in. Everything here is CPU work: run it in a worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from typing import Any, Final

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    convert_color_space,
)

from skypacs.dicom.frames import extract_frames
from skypacs.dicom.render_guard import RenderError, check_codestream
from skypacs.dicom.render_params import (
    LINEAR,
    LINEAR_EXACT,
    SIGMOID,
    RenderParams,
    Viewport,
    Window,
    make_window,
    voi_function,
)
from skypacs.dicom.transcode import FrameFormat, TranscodeError, decode_frame, is_native
from skypacs.errors import BadRequest, SkypacsError

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
GIF: Final = "image/gif"
IMAGE_MEDIA: Final = (JPEG, PNG, GIF)
_PIL_FORMAT: Final = {JPEG: "JPEG", PNG: "PNG", GIF: "GIF"}
_DTYPES: Final = {8: "u1", 16: "<u2", 32: "<u4"}

Floats = NDArray[np.float32]


# --- header -----------------------------------------------------------------------------


def read_header(head: bytes) -> Dataset:
    """The data set before Pixel Data (LUTs, windows, palettes); blocking."""
    try:
        return pydicom.dcmread(BytesIO(head), force=True, stop_before_pixels=True)
    except Exception as exc:
        raise RenderError(f"the stored object cannot be parsed: {type(exc).__name__}") from exc


def parse_whole(data: bytes, numbers: Sequence[int]) -> tuple[Dataset, str, list[bytes]]:
    """Header, frame syntax and frames ``numbers`` of a whole Part 10 object; blocking."""
    try:
        syntax, frames = extract_frames(data, numbers)
    except SkypacsError:
        raise
    except Exception as exc:
        raise RenderError(f"the pixel data cannot be read: {type(exc).__name__}") from exc
    return read_header(data), syntax, frames


# --- native bytes to an array -------------------------------------------------------------


def _expand_ybr_422(buffer: NDArray[Any], fmt: FrameFormat) -> NDArray[Any]:
    """Native YBR_FULL_422 (Y1 Y2 Cb Cr per pixel pair, PS3.3 C.7.6.3.1.2) to full YBR."""
    pairs = buffer[: fmt.rows * fmt.columns * 2].reshape(fmt.rows, fmt.columns // 2, 4)
    luma = pairs[..., 0:2].reshape(fmt.rows, fmt.columns)
    blue = np.repeat(pairs[..., 2], 2, axis=1)
    red = np.repeat(pairs[..., 3], 2, axis=1)
    return np.stack([luma, blue, red], axis=-1)


def _mask_bits(array: NDArray[Any], fmt: FrameFormat) -> NDArray[Any]:
    """Keep Bits Stored bits; sign-extend signed data (PS3.5 §8.1.1)."""
    spare = fmt.bits_allocated - fmt.bits_stored
    if spare <= 0 or fmt.bits_allocated == 1:
        return array
    if fmt.pixel_representation == 1:
        signed = array.view(array.dtype.str.replace("u", "i"))
        return (signed << spare) >> spare
    return array & ((1 << fmt.bits_stored) - 1)


def native_array(native: bytes, fmt: FrameFormat) -> NDArray[Any]:
    """One native little endian frame as ``(rows, columns)`` or ``(rows, columns, 3)``."""
    samples = max(fmt.samples_per_pixel, 1)
    count = fmt.rows * fmt.columns * samples
    raw = np.frombuffer(native, dtype=np.uint8)
    if fmt.bits_allocated == 1:
        bits = np.unpackbits(raw, bitorder="little")
        if bits.size < count:
            raise RenderError("the frame holds fewer pixels than Rows x Columns")
        return bits[:count].reshape(fmt.rows, fmt.columns)
    dtype = _DTYPES.get(fmt.bits_allocated)
    if dtype is None:
        raise RenderError(f"Bits Allocated {fmt.bits_allocated} cannot be rendered")
    width = np.dtype(dtype).itemsize
    usable = len(native) - len(native) % width
    buffer = np.frombuffer(native[:usable], dtype=dtype)
    if samples == 3 and fmt.photometric_interpretation == "YBR_FULL_422" and buffer.size < count:
        return _expand_ybr_422(buffer, fmt)
    if buffer.size < count:
        raise RenderError("the frame holds fewer pixels than Rows x Columns")
    buffer = _mask_bits(buffer[:count], fmt)
    if samples == 1:
        return buffer.reshape(fmt.rows, fmt.columns)
    if fmt.planar_configuration == 1:
        return np.moveaxis(buffer.reshape(samples, fmt.rows, fmt.columns), 0, -1)
    return buffer.reshape(fmt.rows, fmt.columns, samples)


def decode_pixels(frame: bytes, source: str, fmt: FrameFormat) -> tuple[NDArray[Any], str]:
    """Decoded pixels of one stored frame and their photometric interpretation."""
    if not is_native(source):
        check_codestream(frame, fmt)
    try:
        native, out_format = decode_frame(frame, source, fmt)
    except TranscodeError as exc:
        raise RenderError(exc.detail) from exc
    return native_array(native, out_format), out_format.photometric_interpretation


# --- grayscale: modality and VOI ------------------------------------------------------------


def _frame_item(header: Dataset, index: int, sequence: str) -> Dataset | None:
    """First item of ``sequence`` in the frame's (or the shared) functional group."""
    for groups, position in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = header.get(groups)
        if items and len(items) > position:
            inner = items[position].get(sequence)
            if inner:
                return inner[0]  # type: ignore[no-any-return]
    return None


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        return float(value[0]) if len(value) else None
    return float(value)


def modality_values(header: Dataset, pixels: NDArray[Any], index: int) -> Floats:
    """Modality LUT output (PS3.3 C.11.1), per frame for enhanced objects."""
    if header.get("ModalityLUTSequence"):
        return np.asarray(apply_modality_lut(pixels, header), dtype=np.float32)
    source: Dataset = header
    if "RescaleSlope" not in header:
        source = _frame_item(header, index, "PixelValueTransformationSequence") or header
    slope = _first(source.get("RescaleSlope")) or 1.0
    intercept = _first(source.get("RescaleIntercept")) or 0.0
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def dataset_window(header: Dataset, index: int) -> Window | None:
    """The data set's first window (top level, else the frame's VOI functional group)."""
    source: Dataset | None = header
    if "WindowCenter" not in header:
        source = _frame_item(header, index, "FrameVOILUTSequence")
    if source is None:
        return None
    try:
        center = _first(source.get("WindowCenter"))
        width = _first(source.get("WindowWidth"))
    except (TypeError, ValueError, ArithmeticError):
        return None
    try:
        function = voi_function(str(source.get("VOILUTFunction") or LINEAR))
    except BadRequest:
        function = LINEAR
    if center is None or width is None or width <= 0:
        return None
    return make_window(center, max(width, 1.0), function)


def apply_window(values: Floats, window: Window) -> Floats:
    """Map ``values`` to 0..255 with a VOI window (PS3.3 C.11.2.1.2)."""
    center, width = window.center, window.width
    if window.function == SIGMOID:
        curve = 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        return np.asarray(curve, dtype=np.float32)
    if window.function == LINEAR_EXACT:
        low, high = center - width / 2, center + width / 2
        scaled = ((values - center) / width + 0.5) * 255.0
    else:
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
        scaled = ((values - (center - 0.5)) / max(width - 1, 1e-6) + 0.5) * 255.0
    return np.where(values <= low, 0.0, np.where(values > high, 255.0, scaled)).astype(np.float32)


def _voi_lut(header: Dataset, values: Floats) -> Floats:
    """Apply the first VOI LUT Sequence item, scaled to 0..255 by its bit depth."""
    descriptor = header.VOILUTSequence[0].LUTDescriptor
    depth = int(descriptor[2]) if len(descriptor) > 2 else 16
    mapped = apply_voi(np.rint(values).astype(np.int64), header, 0)
    return (mapped.astype(np.float32) * (255.0 / float((1 << depth) - 1))).astype(np.float32)


def _range_window(values: Floats) -> Window:
    low, high = float(values.min()), float(values.max())
    return Window((low + high) / 2, max(high - low, 1.0), LINEAR_EXACT)


def grayscale(
    header: Dataset, pixels: NDArray[Any], index: int, window: Window | None, photometric: str
) -> NDArray[np.uint8]:
    """Monochrome pixels to 8-bit display values."""
    values = modality_values(header, pixels, index)
    if window is not None:
        shown = apply_window(values, window)
    elif header.get("VOILUTSequence"):
        try:
            shown = _voi_lut(header, values)
        except Exception as exc:
            raise RenderError(f"the VOI LUT cannot be applied: {type(exc).__name__}") from exc
    else:
        shown = apply_window(values, dataset_window(header, index) or _range_window(values))
    if photometric == "MONOCHROME1":
        shown = 255.0 - shown
    return np.clip(np.rint(shown), 0, 255).astype(np.uint8)


# --- colour -----------------------------------------------------------------------------------


def _to_uint8(array: NDArray[Any], bits: int) -> NDArray[np.uint8]:
    if array.dtype == np.uint8 or bits <= 8:
        return np.asarray(np.clip(array, 0, 255), dtype=np.uint8)
    shifted: NDArray[np.uint32] = array.astype(np.uint32) >> np.uint32(bits - 8)
    return np.asarray(np.clip(shifted, 0, 255), dtype=np.uint8)


def colour(
    header: Dataset, pixels: NDArray[Any], fmt: FrameFormat, photometric: str
) -> NDArray[np.uint8]:
    """Colour pixels (RGB, YBR_*, PALETTE COLOR) to 8-bit RGB."""
    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(pixels, header)
        except Exception as exc:
            raise RenderError(f"the palette cannot be applied: {type(exc).__name__}") from exc
        peak = int(rgb.max()) if rgb.size else 0
        return _to_uint8(rgb, 16 if peak > 255 else 8)
    rgb = pixels
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        rgb = convert_color_space(_to_uint8(pixels, fmt.bits_stored), "YBR_FULL", "RGB")
    return _to_uint8(rgb, fmt.bits_stored)


# --- viewport and encoding -------------------------------------------------------------------


def _crop(image: Image.Image, region: tuple[int, int, int | None, int | None]) -> Image.Image:
    sx, sy, sw, sh = region
    sx, sy = min(sx, image.width - 1), min(sy, image.height - 1)
    width = image.width - sx if sw is None else min(abs(sw), image.width - sx)
    height = image.height - sy if sh is None else min(abs(sh), image.height - sy)
    cropped = image.crop((sx, sy, sx + width, sy + height))
    if sw is not None and sw < 0:
        cropped = cropped.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if sh is not None and sh < 0:
        cropped = cropped.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return cropped


def fit_size(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The largest size within the box with the aspect ratio of ``width x height``."""
    scale = min(box_width / width, box_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def apply_viewport(image: Image.Image, viewport: Viewport | None) -> Image.Image:
    """Crop to the source region, then scale to fit the viewport (PS3.18 §8.3.5.1.2)."""
    if viewport is None:
        return image
    if viewport.region is not None:
        image = _crop(image, viewport.region)
    size = fit_size(image.width, image.height, viewport.width, viewport.height)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def encode_image(image: Image.Image, media: str, quality: int) -> bytes:
    """Encode with Pillow; ``quality`` applies to JPEG."""
    buffer = BytesIO()
    options: dict[str, Any] = {"quality": quality} if media == JPEG else {}
    image.save(buffer, format=_PIL_FORMAT[media], **options)
    return buffer.getvalue()


def display_image(
    header: Dataset, pixels: NDArray[Any], fmt: FrameFormat, photometric: str, index: int,
    window: Window | None,
) -> Image.Image:  # fmt: skip
    """The 8-bit Pillow image (mode L or RGB) of decoded ``pixels``."""
    if pixels.ndim == 3 or photometric == "PALETTE COLOR":
        return Image.fromarray(colour(header, pixels, fmt, photometric), mode="RGB")
    return Image.fromarray(grayscale(header, pixels, index, window, photometric), mode="L")


def render_frame(
    header: Dataset,
    frame: bytes,
    source: str,
    fmt: FrameFormat,
    index: int,
    params: RenderParams,
    media: str,
) -> bytes:
    """Render frame ``index`` (from 0) stored as ``frame`` in ``source``; blocking."""
    pixels, photometric = decode_pixels(frame, source, fmt)
    try:
        image = display_image(header, pixels, fmt, photometric, index, params.window)
        return encode_image(apply_viewport(image, params.viewport), media, params.quality)
    except RenderError:
        raise
    except Exception as exc:
        raise RenderError(f"the frame cannot be rendered: {type(exc).__name__}") from exc
