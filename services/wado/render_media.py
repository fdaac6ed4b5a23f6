"""Media types of rendered resources and the responses that carry them (PS3.18 §8.7.4).

Offers, most preferred first: JPEG, then PNG, then GIF (single frames only). A
request naming several frames (a study, a series, a multi-frame instance or a
frame list) may also get ``multipart/related`` of rendered images, one part per
frame; a client that accepts only a single image gets the first frame. Rendered
content carries ``Cross-Origin-Resource-Policy: cross-origin`` so pages of other
origins can show it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from skypacs.dicomweb.accept import Offer
from skypacs.dicomweb.media_types import (
    APPLICATION_PDF,
    IMAGE_GIF,
    IMAGE_JPEG,
    IMAGE_PNG,
    MULTIPART_RELATED,
)
from skypacs.dicomweb.multipart import (
    OutPart,
    multipart_content_type,
    new_boundary,
    write_multipart,
)

from .negotiation import choose

CROSS_ORIGIN = {"Cross-Origin-Resource-Policy": "cross-origin"}
SINGLE_IMAGES = (Offer(IMAGE_JPEG), Offer(IMAGE_PNG))


@dataclass(frozen=True, slots=True)
class RenderChoice:
    """The negotiated image media type and whether parts go in a multipart body."""

    media: str
    multipart: bool


def rendered_offers(*, frames: int) -> list[Offer]:
    """Offers for a rendered resource of ``frames`` frames."""
    offers = list(SINGLE_IMAGES)
    if frames == 1:
        offers.append(Offer(IMAGE_GIF))
        return offers
    multipart = [Offer(MULTIPART_RELATED, None, offer.media_type) for offer in SINGLE_IMAGES]
    return multipart + offers


def choose_rendering(request: Request, *, frames: int) -> RenderChoice:
    """The client's pick among :func:`rendered_offers` (406 when none fits)."""
    offer = choose(request, rendered_offers(frames=frames))
    if offer.inner_type is not None:
        return RenderChoice(offer.inner_type.essence, multipart=True)
    return RenderChoice(offer.media_type.essence, multipart=False)


def accepts_pdf(request: Request) -> None:
    """Raise 406 unless the request accepts ``application/pdf``."""
    choose(request, [Offer(APPLICATION_PDF)])


def image_response(body: bytes, media: str) -> Response:
    """One rendered image (or document)."""
    return Response(body, media_type=media, headers=CROSS_ORIGIN)


def multipart_images(
    first: bytes, count: int, rest: Callable[[int], Awaitable[bytes]], media: str
) -> StreamingResponse:
    """``count`` rendered images as multipart/related: ``first``, then ``rest(1..)``."""

    async def parts() -> AsyncIterator[OutPart]:
        yield OutPart(media, first)
        for index in range(1, count):
            yield OutPart(media, await rest(index))

    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(parts(), boundary),
        media_type=multipart_content_type(media, boundary, None),
        headers=CROSS_ORIGIN,
    )
