"""Rendering query parameters (PS3.18 §8.3.5.1) and the pre-decode guards."""

from __future__ import annotations

import pytest

from skypacs.dicom.render_guard import (
    RenderError,
    RenderTooLarge,
    check_codestream,
    check_decoded_size,
    codestream_size,
)
from skypacs.dicom.render_params import (
    LINEAR,
    LINEAR_EXACT,
    SIGMOID,
    Viewport,
    Window,
    parse_quality,
    parse_viewport,
    parse_window,
)
from skypacs.dicom.transcode import FrameFormat
from skypacs.errors import BadRequest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("40,400", Window(40, 400, LINEAR)),
        ("-600.5,1500,linear-exact", Window(-600.5, 1500, LINEAR_EXACT)),
        ("50,350,SIGMOID", Window(50, 350, SIGMOID)),
        ("0,0.5,LINEAR_EXACT", Window(0, 0.5, LINEAR_EXACT)),
    ],
)
def test_window_values_and_functions(text: str, expected: Window) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["40", "40,400,cubic", "a,400", "40,0", "40,inf", "1,2,3,4"])
def test_malformed_windows_are_bad_requests(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_window(text)


def test_viewports() -> None:
    assert parse_viewport("128,64") == Viewport(128, 64)
    assert parse_viewport("100,100,10,20,-50,") == Viewport(100, 100, (10, 20, -50, None))
    assert parse_viewport("100,100,,,,") == Viewport(100, 100, (0, 0, None, None))
    assert parse_viewport(None) is None


@pytest.mark.parametrize("text", ["0,10", "10", "10,10,0,0,0,5", "99999,10", "a,b"])
def test_malformed_viewports_are_bad_requests(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_viewport(text)


def test_quality_bounds() -> None:
    assert parse_quality(None) == 90
    assert parse_quality("1") == 1
    for text in ("0", "101", "high"):
        with pytest.raises(BadRequest):
            parse_quality(text)


def test_decoded_size_limit_counts_every_dimension() -> None:
    fmt = FrameFormat(rows=512, columns=512, samples_per_pixel=3, bits_allocated=16)
    check_decoded_size(fmt, 1, 512 * 512 * 3 * 2)
    with pytest.raises(RenderTooLarge):
        check_decoded_size(fmt, 2, 512 * 512 * 3 * 2)
    with pytest.raises(RenderTooLarge):
        check_decoded_size(FrameFormat(rows=65535, columns=65535), 1, 1 << 30)


def _sof(rows: int, columns: int) -> bytes:
    segment = b"\x08" + rows.to_bytes(2, "big") + columns.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    header = b"\xff\xe0\x00\x04ab"
    return b"\xff\xd8" + header + b"\xff\xc0" + (len(segment) + 2).to_bytes(2, "big") + segment


def _siz(rows: int, columns: int) -> bytes:
    body = b"\x00\x00" + columns.to_bytes(4, "big") + rows.to_bytes(4, "big") + bytes(8)
    return b"\xff\x4f\xff\x51\x00\x29" + body + bytes(24)


def test_codestream_sizes_are_read_from_jpeg_and_jpeg2000_headers() -> None:
    assert codestream_size(_sof(300, 200)) == (300, 200)
    assert codestream_size(_siz(30, 20)) == (30, 20)
    assert codestream_size(b"\x00" * 64) is None


def test_codestream_larger_than_declared_is_refused() -> None:
    fmt = FrameFormat(rows=64, columns=64)
    check_codestream(_sof(64, 64), fmt)
    with pytest.raises(RenderError):
        check_codestream(_sof(60000, 60000), fmt)
    with pytest.raises(RenderError):
        check_codestream(_siz(64, 65000), fmt)
