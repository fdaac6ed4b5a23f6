"""The pixel pipeline on frames built in code: bits, signs, LUTs, windows, viewports."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from skypacs.dicom.render_guard import RenderError
from skypacs.dicom.render_params import (
    LINEAR,
    LINEAR_EXACT,
    SIGMOID,
    RenderParams,
    Viewport,
    Window,
)
from skypacs.dicom.rendering import (
    apply_viewport,
    apply_window,
    fit_size,
    native_array,
    render_frame,
)
from skypacs.dicom.transcode import FrameFormat

pytestmark = pytest.mark.unit

NATIVE = "1.2.840.10008.1.2.1"


def _render(header: Dataset, pixels: np.ndarray, fmt: FrameFormat, **params: object) -> np.ndarray:
    body = render_frame(
        header, pixels.tobytes(), NATIVE, fmt, 0, RenderParams(**params), "image/png"
    )  # type: ignore[arg-type]
    return np.asarray(Image.open(BytesIO(body)))


def test_linear_window_matches_ps3_3_c_11_2_1_2() -> None:
    values = np.array([-1000, 0, 39.5, 40, 239, 240, 1000], dtype=np.float32)
    shown = apply_window(values, Window(40, 400, LINEAR))
    assert shown[0] == 0
    assert shown[-1] == 255
    assert shown[3] == pytest.approx((0.5 / 399 + 0.5) * 255)
    exact = apply_window(values, Window(40, 400, LINEAR_EXACT))
    assert exact[3] == pytest.approx(127.5)
    sigmoid = apply_window(values, Window(40, 400, SIGMOID))
    assert sigmoid[3] == pytest.approx(127.5)
    assert 0 < sigmoid[0] < sigmoid[1] < sigmoid[-1] < 255


def test_signed_twelve_bit_data_is_sign_extended() -> None:
    fmt = FrameFormat(rows=1, columns=3, bits_allocated=16, bits_stored=12, pixel_representation=1)
    raw = np.array([0x0FFF, 0x0800, 0xF7FF], dtype="<u2")  # -1, -2048, 2047 (high bits junk)
    assert native_array(raw.tobytes(), fmt).tolist() == [[-1, -2048, 2047]]


def test_single_bit_and_planar_frames() -> None:
    bits = FrameFormat(rows=2, columns=4, bits_allocated=1, bits_stored=1)
    assert native_array(bytes([0b10100101]), bits).tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    planar = FrameFormat(rows=1, columns=2, samples_per_pixel=3, planar_configuration=1,
                         photometric_interpretation="RGB")  # fmt: skip
    assert native_array(bytes([1, 2, 3, 4, 5, 6]), planar).tolist() == [[[1, 3, 5], [2, 4, 6]]]


def test_short_frame_is_a_render_error() -> None:
    with pytest.raises(RenderError):
        native_array(
            b"\x00" * 10, FrameFormat(rows=4, columns=4, bits_allocated=16, bits_stored=16)
        )


def _header(**attrs: object) -> Dataset:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def test_rescale_window_and_monochrome1() -> None:
    fmt = FrameFormat(rows=2, columns=2, bits_allocated=16, bits_stored=16)
    pixels = np.array([[0, 1000], [2000, 3000]], dtype="<u2")
    header = _header(RescaleSlope=1, RescaleIntercept=-1000, WindowCenter=500, WindowWidth=2000)
    shown = _render(header, pixels, fmt, window=Window(500, 2000, LINEAR_EXACT))
    assert shown.tolist() == [[0, 64], [191, 255]]
    fmt1 = FrameFormat(rows=2, columns=2, bits_allocated=16, bits_stored=16,
                       photometric_interpretation="MONOCHROME1")  # fmt: skip
    inverted = _render(header, pixels, fmt1, window=Window(500, 2000, LINEAR_EXACT))
    assert inverted.tolist() == [[255, 191], [64, 0]]


def test_functional_group_rescale_of_enhanced_objects() -> None:
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 2, 0
    group = Dataset()
    group.PixelValueTransformationSequence = Sequence([transform])
    header = _header(SharedFunctionalGroupsSequence=Sequence([group]))
    fmt = FrameFormat(rows=1, columns=2, bits_allocated=16, bits_stored=16)
    shown = _render(
        header, np.array([[0, 100]], dtype="<u2"), fmt, window=Window(100, 200, LINEAR_EXACT)
    )
    assert shown.tolist() == [[0, 255]]


def test_palette_colour_becomes_rgb() -> None:
    header = _header(
        RedPaletteColorLookupTableDescriptor=[2, 0, 8],
        GreenPaletteColorLookupTableDescriptor=[2, 0, 8],
        BluePaletteColorLookupTableDescriptor=[2, 0, 8],
        RedPaletteColorLookupTableData=bytes([255, 0]),
        GreenPaletteColorLookupTableData=bytes([0, 255]),
        BluePaletteColorLookupTableData=bytes([0, 0]),
        PhotometricInterpretation="PALETTE COLOR",
        BitsStored=8,
        BitsAllocated=8,
        PixelRepresentation=0,
        SamplesPerPixel=1,
    )
    fmt = FrameFormat(rows=1, columns=2, photometric_interpretation="PALETTE COLOR")
    shown = _render(header, np.array([[0, 1]], dtype=np.uint8), fmt)
    assert shown.tolist() == [[[255, 0, 0], [0, 255, 0]]]


def test_viewport_fits_keeping_the_aspect_ratio() -> None:
    assert fit_size(400, 100, 128, 128) == (128, 32)
    assert fit_size(100, 400, 64, 256) == (64, 256)
    image = Image.new("L", (100, 50))
    assert apply_viewport(image, Viewport(20, 20)).size == (20, 10)
    assert apply_viewport(image, Viewport(10, 10, (10, 10, 20, 20))).size == (10, 10)
