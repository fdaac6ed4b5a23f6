"""HTTP ``Range`` requests on frames and bulk data (RFC 9110 §14, PS3.18 §8.3.5).

One byte range per request is honoured (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``);
a header this server does not serve (other units, several ranges, garbage) is
ignored as RFC 9110 permits, and the whole representation is sent. A range
that does not overlap the representation is unsatisfiable (416).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from skypacs.errors import SkypacsError

_SINGLE: Final = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(SkypacsError):
    """The requested range lies outside the representation (416)."""

    status_code = 416
    title = "range not satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"the representation has {size} bytes")
        self.size = size


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A resolved, non-empty range ``[start, end)`` of a ``size``-byte representation."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self) -> str:
        """The ``Content-Range`` value of a 206 answer."""
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range ``header`` asks of a ``size``-byte body, or None to send it all.

    Raises :class:`RangeNotSatisfiable` when the range starts past the end or the
    body is empty.
    """
    if not header:
        return None
    match = _SINGLE.fullmatch(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(size - suffix, 0), size, size)
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, min(end, size), size)


def slice_spans(spans: Sequence[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``spans`` (``(offset, length)`` pieces of one payload, in order)
    that hold payload bytes ``[start, end)``, as ``(offset, length)`` pieces again."""
    out: list[tuple[int, int]] = []
    position = 0
    for offset, length in spans:
        lo, hi = max(start, position), min(end, position + length)
        if lo < hi:
            out.append((offset + lo - position, hi - lo))
        position += length
    return out
