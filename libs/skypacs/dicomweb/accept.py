"""Accept negotiation for DICOMweb (PS3.18 §8.7, RFC 9110 §12.5.1).

The client side is a list of :class:`AcceptItem` (media ranges with a q-value,
an optional ``transfer-syntax`` and, for ``multipart/related``, an optional inner
``type``). The server side is an ordered list of concrete :class:`Offer` values,
most preferred first; :func:`offers_for` expands "this media type with these
transfer syntaxes, this one by default" into such a list.

Matching rules (PS3.18 §8.7.3):

* the range must match the offer's media type (``*/*``, ``type/*`` or exact);
* a ``type=`` parameter must match the offer's inner (part) type; without one,
  any inner type matches;
* ``transfer-syntax=*`` accepts any syntax, preferring an offer of ``*``
  ("as stored", no transcoding); an explicit UID accepts exactly that offer;
  no transfer-syntax accepts only the offer flagged as the media type's default;
  offers that carry no transfer syntax (JSON, XML, rendered) ignore the parameter.

Each offer takes the q-value of the most specific item matching it (RFC 9110:
``application/dicom;q=0, */*`` refuses application/dicom); the winner has the
highest q, then the most specific match, then comes first in the server's order.
Items with q=0 refuse; nothing acceptable raises :class:`NotAcceptable` (406).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from skypacs.dicomweb.media_types import ANY, MediaType, parse_media_type, split_unquoted
from skypacs.errors import BadRequest, NotAcceptable

TRANSFER_SYNTAX_PARAM = "transfer-syntax"
AS_STORED = "*"

# A '+' sent unencoded in a query string arrives as a space ("application/dicom json").
_LOST_PLUS = re.compile(r"^(\s*[A-Za-z0-9.-]+/[A-Za-z0-9.-]+) (json|xml|zip)\b")

Specificity = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class AcceptItem:
    """One media range from an Accept header or ``accept`` query parameter."""

    media_type: MediaType
    q: float = 1.0
    inner_type: MediaType | None = None
    transfer_syntax: str | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    """One concrete representation the server can produce.

    ``transfer_syntax`` is None when the representation has none (JSON, rendered
    images), ``"*"`` for "as stored", otherwise a UID. ``default`` marks the
    syntax used when a request names none. ``inner_type`` is the part type of a
    ``multipart/related`` offer.
    """

    media_type: MediaType
    transfer_syntax: str | None = None
    inner_type: MediaType | None = None
    default: bool = False

    def resolve_transfer_syntax(self, stored: str) -> str | None:
        """The syntax to send: ``stored`` for an "as stored" offer, else the offer's own."""
        return stored if self.transfer_syntax == AS_STORED else self.transfer_syntax


def offers_for(
    media_type: MediaType,
    *,
    inner_type: MediaType | None = None,
    transfer_syntaxes: Iterable[str] = (),
    default_transfer_syntax: str | None = None,
) -> list[Offer]:
    """Expand one media type into offers, one per transfer syntax, in the given order.

    The default syntax is added last when not listed. With neither syntaxes nor a
    default the single offer carries no transfer syntax.
    """
    syntaxes = list(dict.fromkeys(transfer_syntaxes))
    if default_transfer_syntax is not None and default_transfer_syntax not in syntaxes:
        syntaxes.append(default_transfer_syntax)
    if not syntaxes:
        return [Offer(media_type, None, inner_type)]
    return [
        Offer(media_type, ts, inner_type, default=ts == default_transfer_syntax) for ts in syntaxes
    ]


def _parse_q(raw: str | None) -> float | None:
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return min(max(value, 0.0), 1.0)


def parse_accept_item(text: str) -> AcceptItem | None:
    """Parse one media range; None when it is malformed (the caller skips it)."""
    try:
        media_type = parse_media_type(text)
        inner_raw = media_type.param("type")
        inner = parse_media_type(inner_raw) if inner_raw else None
    except BadRequest:
        return None
    q = _parse_q(media_type.param("q"))
    if q is None:
        return None
    syntax = media_type.param(TRANSFER_SYNTAX_PARAM)
    if syntax is None and inner is not None:
        syntax = inner.param(TRANSFER_SYNTAX_PARAM)
    return AcceptItem(
        media_type=media_type.without_params("q"),
        q=q,
        inner_type=inner.without_params() if inner else None,
        transfer_syntax=syntax.strip() if syntax else None,
    )


def parse_accept(header: str | None) -> list[AcceptItem]:
    """Parse an Accept value into items, skipping malformed ones.

    An absent or blank header means ``*/*`` (RFC 9110 §12.5.1). A header in which
    no item can be parsed raises :class:`BadRequest`.
    """
    if header is None or not header.strip():
        return [AcceptItem(ANY)]
    items = [
        item
        for piece in split_unquoted(header, ",")
        if piece.strip() and (item := parse_accept_item(piece)) is not None
    ]
    if not items:
        raise BadRequest(f"malformed Accept value {header!r}")
    return items


def _query_values(accept_query: str | list[str] | None) -> list[str]:
    values = [accept_query] if isinstance(accept_query, str) else list(accept_query or [])
    return [
        _LOST_PLUS.sub(r"\1+\2", piece)
        for value in values
        for piece in split_unquoted(value, ",")
        if piece.strip()
    ]


def accept_from_request(
    header: str | None, accept_query: str | list[str] | None
) -> list[AcceptItem]:
    """The request's acceptable media types.

    The ``accept`` query parameter, possibly repeated and comma-separated,
    overrides the Accept header when present (PS3.18 §8.3.3.1).
    """
    values = _query_values(accept_query)
    if values:
        return parse_accept(", ".join(values))
    return parse_accept(header)


def _range_level(media_range: MediaType, media_type: MediaType) -> int | None:
    if media_range.type == "*":
        return 0 if media_range.subtype == "*" else None
    if media_range.type != media_type.type:
        return None
    if media_range.subtype == "*":
        return 1
    return 2 if media_range.subtype == media_type.subtype else None


def _syntax_level(item: AcceptItem, offer: Offer) -> int | None:
    if offer.transfer_syntax is None:
        return 0
    if item.transfer_syntax is None:
        return 1 if offer.default else None
    if item.transfer_syntax == AS_STORED:
        return 2 if offer.transfer_syntax == AS_STORED else 1
    return 2 if item.transfer_syntax == offer.transfer_syntax else None


def match(item: AcceptItem, offer: Offer) -> Specificity | None:
    """How specifically ``item`` accepts ``offer`` (higher is more specific), None if not."""
    outer = _range_level(item.media_type, offer.media_type)
    if outer is None:
        return None
    inner = 0
    if item.inner_type is not None and offer.inner_type is not None:
        level = _range_level(item.inner_type, offer.inner_type)
        if level is None:
            return None
        inner = level + 1
    syntax = _syntax_level(item, offer)
    if syntax is None:
        return None
    return (outer, inner, syntax)


def _quality(items: Sequence[AcceptItem], offer: Offer) -> tuple[float, Specificity] | None:
    best: tuple[Specificity, float] | None = None
    for item in items:
        specificity = match(item, offer)
        if specificity is not None and (best is None or (specificity, item.q) > best):
            best = (specificity, item.q)
    if best is None or best[1] <= 0.0:
        return None
    return best[1], best[0]


def negotiate(accept_items: Sequence[AcceptItem], offers: Sequence[Offer]) -> Offer:
    """Choose the best offer for ``accept_items`` (see the module docstring).

    An empty ``accept_items`` means ``*/*``. Raises :class:`NotAcceptable` when no
    offer is acceptable.
    """
    items = accept_items or [AcceptItem(ANY)]
    best: tuple[float, Specificity, int] | None = None
    chosen: Offer | None = None
    for rank, offer in enumerate(offers):
        quality = _quality(items, offer)
        if quality is None:
            continue
        key = (quality[0], quality[1], -rank)
        if best is None or key > best:
            best, chosen = key, offer
    if chosen is None:
        raise NotAcceptable(
            f"none of the requested media types is available; offered: {describe(offers)}"
        )
    return chosen


def describe(offers: Sequence[Offer]) -> str:
    """A short, human-readable list of offers for 406 messages."""
    rendered: list[str] = []
    for offer in offers:
        media_type = offer.media_type
        if offer.inner_type is not None:
            media_type = media_type.with_param("type", offer.inner_type.essence)
        if offer.transfer_syntax is not None:
            media_type = media_type.with_param(TRANSFER_SYNTAX_PARAM, offer.transfer_syntax)
        rendered.append(str(media_type))
    return ", ".join(dict.fromkeys(rendered))
