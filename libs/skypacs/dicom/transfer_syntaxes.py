"""Known transfer syntaxes (PS3.5 section 10 and Annex A, PS3.6 Table A-1).

Each entry says how a data set is encoded and which media type a single frame
has when WADO-RS returns it as stored (PS3.18 Table 8.7.3-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

OCTET_STREAM: Final = "application/octet-stream"

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"


@dataclass(frozen=True, slots=True)
class TransferSyntax:
    """How a data set and its pixel data are encoded."""

    uid: str
    name: str
    is_encapsulated: bool
    is_little_endian: bool = True
    is_implicit_vr: bool = False
    is_deflated: bool = False
    is_retired: bool = False
    media_type: str = OCTET_STREAM


def _native(
    uid: str,
    name: str,
    *,
    is_implicit_vr: bool = False,
    is_little_endian: bool = True,
    is_deflated: bool = False,
    is_retired: bool = False,
) -> TransferSyntax:
    return TransferSyntax(
        uid,
        name,
        is_encapsulated=False,
        is_little_endian=is_little_endian,
        is_implicit_vr=is_implicit_vr,
        is_deflated=is_deflated,
        is_retired=is_retired,
    )


def _encapsulated(uid: str, name: str, media_type: str) -> TransferSyntax:
    return TransferSyntax(uid, name, is_encapsulated=True, media_type=media_type)


def _video(prefix: str, names: list[tuple[str, str]], media_type: str) -> list[TransferSyntax]:
    """Each video syntax and its "Fragmentable" variant (suffix ``.1``)."""
    out: list[TransferSyntax] = []
    for suffix, name in names:
        uid = f"{prefix}.{suffix}"
        out.append(_encapsulated(uid, name, media_type))
        out.append(_encapsulated(f"{uid}.1", f"Fragmentable {name}", media_type))
    return out


_JPEG = "1.2.840.10008.1.2.4"

_TABLE: Final[tuple[TransferSyntax, ...]] = (
    _native(IMPLICIT_VR_LITTLE_ENDIAN, "Implicit VR Little Endian", is_implicit_vr=True),
    _native(EXPLICIT_VR_LITTLE_ENDIAN, "Explicit VR Little Endian"),
    _native(
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, "Deflated Explicit VR Little Endian", is_deflated=True
    ),
    _native(
        EXPLICIT_VR_BIG_ENDIAN, "Explicit VR Big Endian", is_little_endian=False, is_retired=True
    ),
    _encapsulated(
        "1.2.840.10008.1.2.1.98",
        "Encapsulated Uncompressed Explicit VR Little Endian",
        OCTET_STREAM,
    ),
    _encapsulated(f"{_JPEG}.50", "JPEG Baseline (Process 1)", "image/jpeg"),
    _encapsulated(f"{_JPEG}.51", "JPEG Extended (Process 2 & 4)", "image/jpeg"),
    _encapsulated(f"{_JPEG}.57", "JPEG Lossless, Non-Hierarchical (Process 14)", "image/jpeg"),
    _encapsulated(
        f"{_JPEG}.70",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [SV1])",
        "image/jpeg",
    ),
    _encapsulated(f"{_JPEG}.80", "JPEG-LS Lossless", "image/jls"),
    _encapsulated(f"{_JPEG}.81", "JPEG-LS Near-Lossless", "image/jls"),
    _encapsulated(f"{_JPEG}.90", "JPEG 2000 (Lossless Only)", "image/jp2"),
    _encapsulated(f"{_JPEG}.91", "JPEG 2000", "image/jp2"),
    _encapsulated(f"{_JPEG}.92", "JPEG 2000 Part 2 Multi-component (Lossless Only)", "image/jpx"),
    _encapsulated(f"{_JPEG}.93", "JPEG 2000 Part 2 Multi-component", "image/jpx"),
    _encapsulated(f"{_JPEG}.201", "High-Throughput JPEG 2000 (Lossless Only)", "image/jphc"),
    _encapsulated(
        f"{_JPEG}.202", "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)", "image/jphc"
    ),
    _encapsulated(f"{_JPEG}.203", "High-Throughput JPEG 2000", "image/jphc"),
    _encapsulated(f"{_JPEG}.110", "JPEG XL Lossless", "image/jxl"),
    _encapsulated(f"{_JPEG}.111", "JPEG XL JPEG Recompression", "image/jxl"),
    _encapsulated(f"{_JPEG}.112", "JPEG XL", "image/jxl"),
    _encapsulated("1.2.840.10008.1.2.5", "RLE Lossless", "image/x-dicom-rle"),
    *_video(_JPEG, [("100", "MPEG2 MP@ML"), ("101", "MPEG2 MP@HL")], "video/mpeg"),
    *_video(
        _JPEG,
        [
            ("102", "MPEG-4 AVC/H.264 High Profile / Level 4.1"),
            ("103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1"),
            ("104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"),
            ("105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video"),
            ("106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"),
        ],
        "video/mp4",
    ),
    _encapsulated(f"{_JPEG}.107", "HEVC/H.265 Main Profile / Level 5.1", "video/mp4"),
    _encapsulated(f"{_JPEG}.108", "HEVC/H.265 Main 10 Profile / Level 5.1", "video/mp4"),
)

TRANSFER_SYNTAXES: Final[dict[str, TransferSyntax]] = {ts.uid: ts for ts in _TABLE}


def get_transfer_syntax(uid: str) -> TransferSyntax | None:
    """The known transfer syntax with this UID, or None."""
    return TRANSFER_SYNTAXES.get(uid.rstrip("\x00 "))
