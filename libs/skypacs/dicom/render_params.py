"""Query parameters of rendered resources (PS3.18 §8.3.5.1) and their parsing.

``window=center,width[,function]`` (§8.3.5.1.3, functions of PS3.3 C.11.2.1.2),
``viewport=vw,vh[,sx,sy,sw,sh]`` (§8.3.5.1.2) and ``quality`` (§8.3.5.1.4). A
malformed value raises :class:`~skypacs.errors.BadRequest`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from skypacs.errors import BadRequest

LINEAR: Final = "LINEAR"
LINEAR_EXACT: Final = "LINEAR_EXACT"
SIGMOID: Final = "SIGMOID"
VOI_FUNCTIONS: Final = frozenset({LINEAR, LINEAR_EXACT, SIGMOID})
DEFAULT_QUALITY: Final = 90
#: Largest edge of a rendered image a client may ask for.
MAX_VIEWPORT_EDGE: Final = 8192


@dataclass(frozen=True, slots=True)
class Window:
    """A VOI window: center, width and VOI LUT Function (0028,1056)."""

    center: float
    width: float
    function: str = LINEAR


@dataclass(frozen=True, slots=True)
class Viewport:
    """Output size ``width`` x ``height`` and an optional source region.

    ``region`` is ``(sx, sy, sw, sh)`` in source pixels; a negative ``sw`` or
    ``sh`` flips the image along that axis.
    """

    width: int
    height: int
    region: tuple[int, int, int | None, int | None] | None = None


@dataclass(frozen=True, slots=True)
class RenderParams:
    """How to render: window (None: from the data set), viewport, JPEG quality."""

    window: Window | None = None
    viewport: Viewport | None = None
    quality: int = DEFAULT_QUALITY


def voi_function(text: str) -> str:
    """Normalise ``linear-exact`` / ``LINEAR_EXACT`` and friends; BadRequest if unknown."""
    name = text.strip().upper().replace("-", "_")
    if name not in VOI_FUNCTIONS:
        raise BadRequest(f"window function must be one of {', '.join(sorted(VOI_FUNCTIONS))}")
    return name


def parse_number(text: str, what: str) -> float:
    """A finite decimal number; BadRequest otherwise."""
    try:
        value = float(text.strip())
    except ValueError:
        raise BadRequest(f"{what} must be a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"{what} must be a finite number")
    return value


def make_window(center: float, width: float, function: str = LINEAR) -> Window:
    """A checked window: width at least 1 (0 for LINEAR_EXACT is refused too)."""
    if width < 1 and not (function == LINEAR_EXACT and width > 0):
        raise BadRequest("window width must be at least 1 (greater than 0 for LINEAR_EXACT)")
    return Window(center, width, function)


def parse_window(text: str | None) -> Window | None:
    """``center,width[,function]`` or None when absent."""
    if text is None:
        return None
    pieces = text.split(",")
    if len(pieces) not in (2, 3):
        raise BadRequest("window must be center,width[,function]")
    function = voi_function(pieces[2]) if len(pieces) == 3 else LINEAR
    center = parse_number(pieces[0], "window center")
    width = parse_number(pieces[1], "window width")
    return make_window(center, width, function)


def parse_integer(text: str, what: str, *, low: int, high: int) -> int:
    """An integer within ``[low, high]``; BadRequest otherwise."""
    try:
        value = int(text.strip())
    except ValueError:
        raise BadRequest(f"{what} must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"{what} must be between {low} and {high}")
    return value


def _edge(text: str, what: str) -> int:
    return parse_integer(text, what, low=1, high=MAX_VIEWPORT_EDGE)


def _optional(text: str, what: str, *, low: int) -> int | None:
    if not text.strip():
        return None
    return parse_integer(text, what, low=low, high=1 << 20)


def parse_viewport(text: str | None) -> Viewport | None:
    """``vw,vh`` or ``vw,vh,sx,sy,sw,sh`` (empty sx/sy/sw/sh take defaults)."""
    if text is None:
        return None
    pieces = text.split(",")
    if len(pieces) not in (2, 6):
        raise BadRequest("viewport must be vw,vh or vw,vh,sx,sy,sw,sh")
    width, height = _edge(pieces[0], "viewport width"), _edge(pieces[1], "viewport height")
    if len(pieces) == 2:
        return Viewport(width, height)
    sx = _optional(pieces[2], "viewport sx", low=0) or 0
    sy = _optional(pieces[3], "viewport sy", low=0) or 0
    sw = _optional(pieces[4], "viewport sw", low=-(1 << 20))
    sh = _optional(pieces[5], "viewport sh", low=-(1 << 20))
    if sw == 0 or sh == 0:
        raise BadRequest("viewport sw and sh must not be 0")
    return Viewport(width, height, (sx, sy, sw, sh))


def parse_quality(text: str | None) -> int:
    """JPEG quality 1..100 (default 90)."""
    if text is None:
        return DEFAULT_QUALITY
    return parse_integer(text, "quality", low=1, high=100)


def parse_render_params(
    window: str | None, viewport: str | None, quality: str | None
) -> RenderParams:
    """All rendering parameters of one request."""
    return RenderParams(parse_window(window), parse_viewport(viewport), parse_quality(quality))
