"""Transfer syntax conversion of whole instances and of single frames (PS3.5 §10, A.4).

Decoding covers every syntax pydicom and the pylibjpeg plugins read (JPEG
baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K, RLE, big endian and
deflated data sets); encoding covers the native syntaxes, JPEG 2000 lossless and
RLE lossless. Everything here is CPU work on bytes held in memory: callers run
it in a worker thread, one instance or frame at a time. Instance UIDs are kept:
a retrieve converts the encoding, it does not create new instances.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from io import BytesIO
from typing import Any, Final

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder
from pydicom.pixels.utils import pack_bits
from pydicom.uid import UID

from skypacs.dicom.transfer_syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    get_transfer_syntax,
)
from skypacs.errors import NotAcceptable

JPEG_2000_LOSSLESS: Final = "1.2.840.10008.1.2.4.90"
RLE_LOSSLESS: Final = "1.2.840.10008.1.2.5"
#: Native syntaxes whose frames are little endian bytes, identical to Explicit VR LE.
LITTLE_ENDIAN_NATIVE: Final = frozenset(
    {IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN}
)
#: Syntaxes an instance can be converted to whatever it was stored in.
INSTANCE_TARGETS: Final = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_2000_LOSSLESS,
    RLE_LOSSLESS,
)
#: Compressed syntaxes a native frame can be encoded to.
FRAME_ENCODERS: Final = (JPEG_2000_LOSSLESS, RLE_LOSSLESS)

_PIXEL_KEYS: Final = {
    "rows": "00280010",
    "columns": "00280011",
    "samples_per_pixel": "00280002",
    "bits_allocated": "00280100",
    "bits_stored": "00280101",
    "pixel_representation": "00280103",
    "planar_configuration": "00280006",
}
_PHOTOMETRIC: Final = "00280004"


class TranscodeError(NotAcceptable):
    """The object cannot be produced in the requested transfer syntax (406)."""

    title = "cannot transcode"


def is_native(uid: str) -> bool:
    """Whether ``uid`` keeps pixel data unencapsulated (unknown syntaxes are not)."""
    syntax = get_transfer_syntax(uid)
    return syntax is not None and not syntax.is_encapsulated


def can_decode(uid: str) -> bool:
    """Whether pixel data in ``uid`` can be decoded to native little endian."""
    if is_native(uid):
        return True
    try:
        return bool(get_decoder(uid).is_available)
    except (NotImplementedError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class FrameFormat:
    """The Image Pixel attributes (PS3.3 C.7.6.3) that describe one frame's bytes."""

    rows: int
    columns: int
    samples_per_pixel: int = 1
    bits_allocated: int = 8
    bits_stored: int = 8
    pixel_representation: int = 0
    photometric_interpretation: str = "MONOCHROME2"
    planar_configuration: int = 0

    @classmethod
    def from_json(cls, attrs: Mapping[str, Any]) -> FrameFormat | None:
        """From DICOM JSON attributes of group 0028; None when Rows/Columns are missing."""
        values: dict[str, Any] = {}
        for name, tag in _PIXEL_KEYS.items():
            number = _first_value(attrs, tag)
            if isinstance(number, int | float):
                values[name] = int(number)
        if "rows" not in values or "columns" not in values:
            return None
        values.setdefault("bits_stored", values.get("bits_allocated", 8))
        photometric = _first_value(attrs, _PHOTOMETRIC)
        if isinstance(photometric, str) and photometric:
            values["photometric_interpretation"] = photometric.strip()
        return cls(**values)

    def options(self) -> dict[str, Any]:
        """Keyword options for pydicom's decoders and encoders, for one frame."""
        return {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples_per_pixel,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": self.pixel_representation,
            "photometric_interpretation": self.photometric_interpretation,
            "planar_configuration": self.planar_configuration,
            "number_of_frames": 1,
        }


def _first_value(attrs: Mapping[str, Any], tag: str) -> Any:
    values = (attrs.get(tag) or {}).get("Value") or [None]
    return values[0]


# --- frames --------------------------------------------------------------------------


def _swap_to_little_endian(frame: bytes, bits_allocated: int) -> bytes:
    if bits_allocated not in (16, 32, 64):
        return frame
    dtype = np.dtype(f">u{bits_allocated // 8}")
    return np.frombuffer(frame, dtype=dtype).astype(dtype.newbyteorder("<")).tobytes()


def decode_frame(frame: bytes, source: str, fmt: FrameFormat) -> tuple[bytes, FrameFormat]:
    """One frame as native little endian bytes, and the format those bytes have.

    Colour frames decoded from YCbCr JPEG come back as RGB (as pydicom does for a
    whole data set); planar configuration becomes 0 (interleaved).
    """
    if source in LITTLE_ENDIAN_NATIVE:
        return frame, fmt
    if source == EXPLICIT_VR_BIG_ENDIAN:
        return _swap_to_little_endian(frame, fmt.bits_allocated), fmt
    if not can_decode(source):
        raise TranscodeError(f"frames in transfer syntax {source} cannot be decoded")
    try:
        # pydicom decodes encapsulated values: wrap the frame as one (PS3.5 A.4).
        array, _ = get_decoder(source).as_array(encapsulate([frame]), **fmt.options())
    except Exception as exc:
        raise TranscodeError(f"frame cannot be decoded from {source}: {exc}") from exc
    photometric = fmt.photometric_interpretation
    if fmt.samples_per_pixel == 3 and photometric.startswith("YBR"):
        photometric = "RGB"
    out_format = replace(fmt, photometric_interpretation=photometric, planar_configuration=0)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return little.tobytes(), out_format


def encode_frame(native: bytes, target: str, fmt: FrameFormat) -> bytes:
    """Encode one native little endian frame into ``target`` (JPEG 2000 or RLE lossless)."""
    if target not in FRAME_ENCODERS:
        raise TranscodeError(f"frames cannot be encoded in transfer syntax {target}")
    try:
        return bytes(get_encoder(target).encode(native, **fmt.options()))
    except Exception as exc:
        raise TranscodeError(f"frame cannot be encoded in {target}: {exc}") from exc


def transcode_frame(frame: bytes, source: str, target: str, fmt: FrameFormat) -> bytes:
    """Convert one frame from ``source`` to ``target`` (a native or encodable syntax)."""
    if target == source:
        return frame
    native, native_format = decode_frame(frame, source, fmt)
    if target in LITTLE_ENDIAN_NATIVE:
        return native
    return encode_frame(native, target, native_format)


def frame_targets(source: str) -> tuple[str, ...]:
    """Syntaxes a frame stored in ``source`` can be served in, ``source`` first."""
    if not can_decode(source):
        return (source,)
    produced = (EXPLICIT_VR_LITTLE_ENDIAN, *FRAME_ENCODERS)
    return (source, *(uid for uid in produced if uid != source))


# --- whole instances -----------------------------------------------------------------


def instance_targets(source: str) -> tuple[str, ...]:
    """Syntaxes an instance stored in ``source`` can be retrieved in."""
    if not can_decode(source):
        return (source,)
    return (source, *(uid for uid in INSTANCE_TARGETS if uid != source))


def _write(ds: Dataset, target: str, *, re_encode: bool) -> bytes:
    """Write ``ds`` as Part 10 in ``target``; ``re_encode`` when the byte order changes."""
    ds.file_meta.TransferSyntaxUID = UID(target)
    buffer = BytesIO()
    dcmwrite(
        buffer,
        ds,
        implicit_vr=target == IMPLICIT_VR_LITTLE_ENDIAN,
        little_endian=True,
        enforce_file_format=not re_encode,
        force_encoding=re_encode,
    )
    return buffer.getvalue()


def _to_little_endian_native(ds: Dataset, source: str) -> None:
    """Decode compressed or big endian pixel data in place (Explicit VR LE)."""
    if "PixelData" not in ds:
        return
    if not is_native(source):
        ds.decompress(generate_instance_uid=False)
        return
    if source == EXPLICIT_VR_BIG_ENDIAN:
        bits = int(ds.get("BitsAllocated", 8) or 8)
        array = np.asarray(ds.pixel_array)
        if bits == 1:
            ds.PixelData = pack_bits(array)
        else:
            ds.PixelData = array.astype(array.dtype.newbyteorder("<")).tobytes()
            if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
                ds.PlanarConfiguration = 0
        ds["PixelData"].VR = "OW" if bits > 8 else "OB"


def transcode_instance(data: bytes, target: str) -> bytes:
    """A Part 10 file re-encoded in ``target``; raises :class:`TranscodeError` if impossible."""
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
    except Exception as exc:
        raise TranscodeError(f"the stored object cannot be parsed: {exc}") from exc
    source = str(ds.file_meta.get("TransferSyntaxUID", EXPLICIT_VR_LITTLE_ENDIAN))
    if target == source:
        return data
    if target not in INSTANCE_TARGETS:
        raise TranscodeError(f"instances cannot be encoded in transfer syntax {target}")
    try:
        for _ in ds.iterall():  # resolve raw elements (and their VRs) before writing
            pass
        _to_little_endian_native(ds, source)
        if target in FRAME_ENCODERS and "PixelData" in ds:
            ds.compress(target, generate_instance_uid=False)
        return _write(ds, target, re_encode=source == EXPLICIT_VR_BIG_ENDIAN)
    except TranscodeError:
        raise
    except Exception as exc:
        raise TranscodeError(f"instance cannot be converted from {source} to {target}") from exc
