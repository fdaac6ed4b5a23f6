"""A data set header read into pydicom's raw elements without pydicom's reader.

Ingest decodes every header it stores (the bytes the dataset walker kept, up to
Pixel Data). Most are explicit VR little endian with defined lengths only; for
those, one pass over the element headers builds the same
:class:`~pydicom.dataelem.RawDataElement` mapping that ``read_dataset`` builds,
in about a third of its time. Anything else (implicit or big endian encoding,
undefined lengths, an unknown VR, a truncated element) goes to pydicom as
before, so the result never depends on which path was taken.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Final, cast

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag

from skypacs.dicom.dataset_walker import LONG_VRS, SHORT_VRS, UNDEFINED_LENGTH

#: Group, element, VR and 2-byte length (PS3.5 Table 7.1-2).
_SHORT_HEADER: Final = struct.Struct("<HH2sH")
#: The 4-byte length after the 2 reserved bytes (PS3.5 Table 7.1-1).
_LONG_LENGTH: Final = struct.Struct("<L")
_CHARSET: Final = BaseTag(0x00080005)
_VR_NAMES: Final = {vr: vr.decode("ascii") for vr in LONG_VRS | SHORT_VRS}

#: As pydicom's ``Dataset`` takes them (this module only makes raw ones).
RawElements = dict[BaseTag, DataElement | RawDataElement]


def read_data_set(data: bytes, *, implicit: bool, little: bool) -> Dataset:
    """``data`` (a whole encoded data set) as pydicom's ``read_dataset`` returns it."""
    elements = None if implicit or not little else explicit_little_elements(data)
    if elements is None:
        return read_dataset(BytesIO(data), implicit, little)
    dataset = Dataset(elements, parent_encoding=default_encoding)
    charset = elements.get(_CHARSET)
    encoding = (
        convert_encodings(convert_raw_data_element(charset).value)
        if isinstance(charset, RawDataElement)
        else default_encoding
    )
    dataset.set_original_encoding(False, True, encoding)
    return dataset


def explicit_little_elements(data: bytes) -> RawElements | None:
    """The raw elements of an explicit VR little endian data set with defined lengths.

    None when ``data`` is anything else, for pydicom to read instead.
    """
    elements: RawElements = {}
    end = len(data)
    at = 0
    while at < end:
        if end - at < 8:
            return None
        group, number, vr, length = _SHORT_HEADER.unpack_from(data, at)
        if vr in LONG_VRS:
            if end - at < 12:
                return None
            (length,) = _LONG_LENGTH.unpack_from(data, at + 8)
            value_at = at + 12
        elif vr in SHORT_VRS:
            value_at = at + 8
        else:
            return None
        if length == UNDEFINED_LENGTH or group == 0xFFFE or value_at + length > end:
            return None
        tag = BaseTag(group << 16 | number)
        name = _VR_NAMES[vr]
        value = (
            data[value_at : value_at + length]
            if length
            else cast("bytes | None", empty_value_for_VR(name, raw=True))
        )
        elements[tag] = RawDataElement(tag, name, length, value, value_at, False, True)
        at = value_at + length
    return elements


__all__ = ["explicit_little_elements", "read_data_set"]
