"""Bulk data values found by parsing a stored object (PS3.18 §10.4.1.1.5).

Top-level values are normally read by byte range from offsets recorded at
ingest; values inside sequences, and every value of a deflated data set, are
found here by parsing the object. Blocking: run in a worker thread.
"""

from __future__ import annotations

from io import BytesIO

import pydicom
from pydicom.dataset import Dataset


def _step(ds: Dataset, tag_hex: str) -> object | None:
    tag = int(tag_hex, 16)
    return ds[tag].value if tag in ds else None


def find_bulk_value(data: bytes, tag_path: str) -> bytes | None:
    """The bytes of the binary value at ``tag_path`` (``TAG`` or ``SEQ/item/TAG/...``).

    None when the path leads nowhere or to a value that is not binary.
    """
    ds = pydicom.dcmread(BytesIO(data), force=True)
    pieces = tag_path.split("/")
    current: Dataset = ds
    for position in range(0, len(pieces) - 1, 2):
        items = _step(current, pieces[position])
        index = int(pieces[position + 1])
        if not isinstance(items, list | pydicom.Sequence) or index >= len(items):
            return None
        current = items[index]
    value = _step(current, pieces[-1])
    return bytes(value) if isinstance(value, bytes | bytearray) else None
