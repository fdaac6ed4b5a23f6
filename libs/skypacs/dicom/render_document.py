"""The document of an Encapsulated PDF instance (PS3.3 A.45.1, C.24.2)."""

from __future__ import annotations

from io import BytesIO

import pydicom

from skypacs.dicom.render_guard import RenderError
from skypacs.errors import NotFound


def encapsulated_document(data: bytes) -> bytes:
    """Encapsulated Document (0042,0011) of a whole Part 10 object; blocking."""
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
        element = ds.get("EncapsulatedDocument")
    except Exception as exc:
        raise RenderError(f"the stored document cannot be read: {type(exc).__name__}") from exc
    if element is None:
        raise NotFound("the instance holds no encapsulated document")
    return bytes(element)


def strip_padding(document: bytes) -> bytes:
    """Drop the NUL byte that pads an odd-length document to even length (PS3.5 §7.1)."""
    return document[:-1] if document.endswith(b"\x00") else document
