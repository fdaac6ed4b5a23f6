"""The Part 10 scanner on synthesized layouts and malformed uploads."""

from __future__ import annotations

import struct

import pytest
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.uid import RLELossless

from skypacs.dicom.parse_errors import DicomParseError
from skypacs.dicom.part10_scanner import Part10Scanner
from tests.unit.dicom_samples import image_dataset, part10_bytes, read_ranges, scan

pytestmark = pytest.mark.unit


def _frames(count: int, size: int = 40) -> list[bytes]:
    return [bytes([index + 1]) * size for index in range(count)]


def _encapsulated_file(
    frames: list[bytes], *, fragments_per_frame: int, bot: bool, extended: bool = False
) -> bytes:
    ds = image_dataset(
        RLELossless,
        Rows=4,
        Columns=10,
        SamplesPerPixel=1,
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PixelRepresentation=0,
        PhotometricInterpretation="MONOCHROME2",
        NumberOfFrames=len(frames),
    )
    if extended:
        pixel, offsets, lengths = encapsulate_extended(frames)
        ds.PixelData = pixel
        ds.ExtendedOffsetTable = offsets
        ds.ExtendedOffsetTableLengths = lengths
    else:
        ds.PixelData = encapsulate(frames, fragments_per_frame=fragments_per_frame, has_bot=bot)
    ds["PixelData"].VR = "OB"
    return part10_bytes(ds)


@pytest.mark.parametrize("fragments_per_frame", [1, 2, 3])
def test_multi_fragment_frames_follow_the_basic_offset_table(fragments_per_frame: int) -> None:
    frames = _frames(3, 42)
    data = _encapsulated_file(frames, fragments_per_frame=fragments_per_frame, bot=True)
    _, result = scan(data, 5)
    layout = result.pixel_data
    assert layout is not None
    assert layout.frames is not None
    assert layout.has_basic_offset_table
    assert len(layout.fragments) == 3 * fragments_per_frame
    assert [read_ranges(data, frame) for frame in layout.frames] == frames


def test_multi_fragment_frames_without_offset_table_are_unknown() -> None:
    data = _encapsulated_file(_frames(3, 42), fragments_per_frame=2, bot=False)
    _, result = scan(data)
    layout = result.pixel_data
    assert layout is not None
    assert layout.frames is None
    assert not layout.has_basic_offset_table
    assert len(layout.fragments) == 6


@pytest.mark.parametrize("threshold", [8, 1024])
def test_extended_offset_table_maps_frames(threshold: int) -> None:
    frames = [bytes([n]) * (10 + 2 * n) for n in range(1, 5)]
    data = _encapsulated_file(frames, fragments_per_frame=1, bot=False, extended=True)
    _, result = scan(data, 3, bulk_threshold=threshold)
    layout = result.pixel_data
    assert layout is not None
    assert layout.frames is not None
    assert [read_ranges(data, frame) for frame in layout.frames] == frames
    assert ("7FE00001" in result.bulk_ranges) == (threshold == 8)


def test_extended_offset_table_groups_fragments() -> None:
    # Frames of 2 fragments each, located only through the Extended Offset Table.
    frames = _frames(3, 30)
    ds_bytes = _encapsulated_file(frames, fragments_per_frame=2, bot=False)
    _, plain = scan(ds_bytes)
    assert plain.pixel_data is not None
    first_item = plain.pixel_data.fragments[0][0] - 8
    starts = [offset - 8 - first_item for offset, _ in plain.pixel_data.fragments[::2]]
    ds = image_dataset(NumberOfFrames=3, Rows=3, Columns=10, BitsAllocated=8, SamplesPerPixel=1)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.ExtendedOffsetTable = struct.pack("<3Q", *starts)
    ds.ExtendedOffsetTableLengths = struct.pack("<3Q", 30, 30, 30)
    ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=False)
    ds["PixelData"].VR = "OB"
    data = part10_bytes(ds)
    _, result = scan(data, 11)
    assert result.pixel_data is not None
    assert result.pixel_data.frames is not None
    assert [read_ranges(data, f) for f in result.pixel_data.frames] == frames


def _native_file(rows: int, columns: int, frames: int, bits: int) -> tuple[bytes, bytes]:
    frame_bits = rows * columns * bits
    total = (frame_bits * frames + 7) // 8
    pixels = bytes((n * 37) % 256 for n in range(total + total % 2))
    ds = image_dataset(
        Rows=rows,
        Columns=columns,
        SamplesPerPixel=1,
        BitsAllocated=bits,
        BitsStored=bits,
        HighBit=bits - 1,
        PixelRepresentation=0,
        PhotometricInterpretation="MONOCHROME2",
        NumberOfFrames=frames,
        PixelData=pixels,
    )
    return part10_bytes(ds), pixels


def test_native_multi_frame_offsets_are_arithmetic() -> None:
    data, pixels = _native_file(3, 5, 4, 16)
    _, result = scan(data, 7)
    layout = result.pixel_data
    assert layout is not None
    assert layout.frames is not None
    assert not layout.is_encapsulated
    assert [read_ranges(data, f) for f in layout.frames] == [
        pixels[k * 30 : (k + 1) * 30] for k in range(4)
    ]
    assert result.header_length == layout.element_offset < layout.value_offset


def test_single_bit_frames_off_byte_boundaries_are_flagged() -> None:
    data, pixels = _native_file(3, 3, 2, 1)
    _, result = scan(data)
    layout = result.pixel_data
    assert layout is not None
    assert layout.frames is None
    assert layout.unaligned_frames
    offset, length = layout.value_offset, layout.value_length
    assert length is not None
    assert data[offset : offset + length] == pixels


def test_single_bit_frames_on_byte_boundaries_have_ranges() -> None:
    data, pixels = _native_file(4, 4, 3, 1)
    _, result = scan(data)
    layout = result.pixel_data
    assert layout is not None
    assert layout.frames is not None
    assert [read_ranges(data, f) for f in layout.frames] == [pixels[0:2], pixels[2:4], pixels[4:6]]


def _explicit_le(tag: int, vr: bytes, value: bytes) -> bytes:
    group, element = tag >> 16, tag & 0xFFFF
    if vr in {b"OB", b"OW", b"SQ", b"UN", b"UT"}:
        return struct.pack("<HH2sHL", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _implicit(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


def test_undefined_length_un_and_nested_sequences() -> None:
    head = part10_bytes(image_dataset())
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    undefined_un = struct.pack("<HH2sHL", 0x0029, 0x1001, b"UN", 0, 0xFFFFFFFF)
    undefined_sq = struct.pack("<HH2sHL", 0x0040, 0x0100, b"SQ", 0, 0xFFFFFFFF)
    inner_sq = struct.pack("<HH2sHL", 0x0040, 0x0008, b"SQ", 0, 0xFFFFFFFF)
    body = (
        _explicit_le(0x00290010, b"LO", b"ACME")
        + undefined_un
        + item
        + _implicit(0x00291002, b"PRIV")
        + item_end
        + seq_end
        + undefined_sq
        + item
        + _explicit_le(0x00400007, b"LO", b"STEP")
        + inner_sq
        + item
        + _explicit_le(0x00080100, b"SH", b"CODE01")
        + item_end
        + seq_end
        + item_end
        + seq_end
        + _explicit_le(0x7FE00010, b"OB", b"\x01\x02\x03\x04")
    )
    data = head + body
    stored, result = scan(data, 1)
    assert stored[128:] == data[128:]
    step = result.dataset.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepDescription == "STEP"
    assert step.ScheduledProtocolCodeSequence[0].CodeValue == "CODE01"
    assert result.pixel_data is not None
    assert result.pixel_data.frames is None
    assert result.pixel_data.value_length == 4
    assert result.dataset[0x00291001].VR in {"UN", "SQ"}


@pytest.mark.parametrize("chunk", [None, 7])
def test_pixel_data_with_a_short_vr_is_still_pixel_data(chunk: int | None) -> None:
    head = part10_bytes(image_dataset())
    data = (
        head
        + _explicit_le(0x00291010, b"LO", b"ACME")
        + _explicit_le(0x7FE00010, b"US", b"\x01\x02\x03\x04")
    )
    stored, result = scan(data, chunk)
    assert stored[128:] == data[128:]
    assert result.pixel_data is not None
    assert result.pixel_data.value_length == 4
    assert result.dataset[0x00291010].value == "ACME"


def test_header_bulk_values_are_recorded_not_buffered() -> None:
    overlay = bytes(range(256)) * 8
    ds = image_dataset(Rows=2, Columns=2, BitsAllocated=8, SamplesPerPixel=1, PixelData=b"abcd")
    ds.add_new(0x60003000, "OW", overlay)
    ds.ICCProfile = b"\x00icc" * 10
    data = part10_bytes(ds)
    _, result = scan(data, 100, bulk_threshold=1024)
    offset, length = result.bulk_ranges["60003000"]
    assert data[offset : offset + length] == overlay
    assert "00282000" not in result.bulk_ranges  # 40 bytes: below the threshold
    assert result.dataset.ICCProfile == b"\x00icc" * 10
    assert not result.dataset[0x60003000].value


def test_deflated_has_a_dataset_but_no_frames() -> None:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("image_dfl.dcm")
    assert path is not None
    with open(path, "rb") as handle:
        data = handle.read()
    _, result = scan(data, 33)
    assert result.transfer_syntax_uid == "1.2.840.10008.1.2.1.99"
    assert result.pixel_data is not None
    assert result.pixel_data.frames is None
    assert result.bulk_ranges == {}
    assert result.dataset.Rows > 0


def _assert_refused(data: bytes, chunk: int | None = None, **options: int) -> str:
    with pytest.raises(DicomParseError) as caught:
        scan(data, chunk, **options)
    assert caught.value.failure_reason == 0xC000
    assert caught.value.status_code == 400
    return caught.value.detail


def test_pixel_data_shorter_than_declared_is_refused() -> None:
    data, _ = _native_file(8, 8, 2, 8)
    assert "before the end of a value" in _assert_refused(data[:-10], 7)


def test_unterminated_encapsulated_pixel_data_is_refused() -> None:
    data = _encapsulated_file(_frames(2), fragments_per_frame=1, bot=True)
    assert "pixel data" in _assert_refused(data[:-8])


def test_unterminated_sequence_is_refused() -> None:
    head = part10_bytes(image_dataset())
    sq = struct.pack("<HH2sHL", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    assert "sequence" in _assert_refused(head + sq + item + _explicit_le(0x00400007, b"LO", b"AB"))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d[:100],
        lambda d: d[:128] + b"DICN" + d[132:],
        lambda d: d[:140],
        lambda d: d[:132] + b"\x02\x00\x10\x00ZZ" + d[138:],
        lambda d: d + b"\x08\x00\x30\x00",
        lambda d: d + b"\x08\x00\x30\x00!!\x04\x00abcd",
        lambda d: b"",
    ],
    ids=["short", "bad-magic", "cut-meta", "bad-meta-vr", "cut-header", "bad-vr", "empty"],
)
def test_garbage_is_refused(mangle: object) -> None:
    data = part10_bytes(image_dataset())
    assert callable(mangle)
    _assert_refused(mangle(data))


def test_header_limit_is_enforced() -> None:
    ds = image_dataset(StudyDescription="x" * 3000)
    assert "limit" in _assert_refused(part10_bytes(ds), 512, max_header_bytes=2048)


def test_header_limit_bounds_the_header_not_the_file() -> None:
    data, pixels = _native_file(64, 64, 4, 16)
    assert len(pixels) > 4 * 4096
    _, result = scan(data, None, max_header_bytes=4096)
    assert result.pixel_data is not None
    assert result.size == len(data)


def test_feed_after_finish_is_an_error() -> None:
    scanner = Part10Scanner()
    scanner.feed(part10_bytes(image_dataset()))
    scanner.finish()
    with pytest.raises(RuntimeError):
        scanner.feed(b"more")


def test_unknown_transfer_syntax_is_read_as_explicit_little_endian() -> None:
    ds = image_dataset("1.2.826.0.1.3680043.99.1", NumberOfFrames=1)
    ds.PixelData = encapsulate([b"abcd", b"efgh"], fragments_per_frame=2, has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    data = part10_bytes(ds, implicit=False)
    _, result = scan(data)
    assert result.transfer_syntax_uid == "1.2.826.0.1.3680043.99.1"
    assert result.pixel_data is not None
    assert result.pixel_data.frames is not None
    assert read_ranges(data, result.pixel_data.frames[0]) == b"abcdefgh"


def test_header_is_known_before_pixel_data_arrives() -> None:
    from pydicom.data import get_testdata_file

    from skypacs.dicom.part10_scanner import Part10Scanner

    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    with open(path, "rb") as handle:
        data = handle.read()
    scanner = Part10Scanner()
    fed = 0
    while not scanner.header_complete:
        scanner.feed(data[fed : fed + 256])
        fed += 256
    assert fed < len(data) - 1000  # pixel data is still to come
    early = scanner.peek_dataset()
    scanner.feed(data[fed:])
    result = scanner.finish()
    assert early.SOPInstanceUID == result.dataset.SOPInstanceUID
    assert early.PatientName == result.dataset.PatientName
