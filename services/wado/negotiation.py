"""What each WADO-RS resource can be sent as, and the client's pick (PS3.18 §8.7.3).

Offers are listed most preferred first. Instances: multipart/related of
application/dicom, by default Explicit VR Little Endian, ``*`` as stored, or any
syntax every instance of the request can be converted to (Table 8.7.3-3).
Frames: multipart (or, for one frame, single part) of application/octet-stream
for native pixels or the compressed image media type of the syntax (Table
8.7.3-5), each with its default syntax; the stored syntax also counts as the
default of its own media type, so ``type="image/jpeg"`` gets lossless JPEG
frames as stored rather than a 406. Bulk data and metadata carry no syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastapi import Request

from skypacs.dicom.transcode import frame_targets, instance_targets, is_native
from skypacs.dicom.transfer_syntaxes import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    OCTET_STREAM,
    get_transfer_syntax,
)
from skypacs.dicomweb.accept import AS_STORED, Offer, accept_from_request, negotiate
from skypacs.dicomweb.media_types import (
    APPLICATION_DICOM,
    APPLICATION_DICOM_JSON,
    APPLICATION_DICOM_XML,
    APPLICATION_JSON,
    APPLICATION_OCTET_STREAM,
    MULTIPART_RELATED,
    MediaType,
    parse_media_type,
)

#: PS3.18 Table 8.7.3-5: the syntax a frame media type means when none is named.
DEFAULT_SYNTAX = {
    "application/octet-stream": EXPLICIT_VR_LITTLE_ENDIAN,
    "image/jpeg": "1.2.840.10008.1.2.4.50",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/jphc": "1.2.840.10008.1.2.4.201",
    "image/x-dicom-rle": "1.2.840.10008.1.2.5",
}


def choose(request: Request, offers: Sequence[Offer]) -> Offer:
    """The best offer for the request's Accept (``?accept=`` overriding the header)."""
    items = accept_from_request(
        request.headers.get("accept"), request.query_params.getlist("accept") or None
    )
    return negotiate(items, offers)


def frame_media(transfer_syntax_uid: str) -> MediaType:
    """Media type of one frame in ``transfer_syntax_uid`` (octet-stream when native)."""
    syntax = get_transfer_syntax(transfer_syntax_uid)
    return parse_media_type(syntax.media_type if syntax is not None else OCTET_STREAM)


def _common_targets(stored: Iterable[str]) -> list[str]:
    common: list[str] | None = None
    for source in dict.fromkeys(stored):
        targets = list(instance_targets(source))
        common = targets if common is None else [t for t in common if t in targets]
    return common or []


def instance_offers(stored_syntaxes: Iterable[str], *, single: bool) -> list[Offer]:
    """Offers for retrieving instances stored in ``stored_syntaxes``."""
    targets = _common_targets(stored_syntaxes)
    ordered = sorted(targets, key=lambda uid: uid != EXPLICIT_VR_LITTLE_ENDIAN)
    kinds = [(MULTIPART_RELATED, APPLICATION_DICOM)]
    if single:
        kinds.append((APPLICATION_DICOM, None))  # type: ignore[arg-type]
    offers: list[Offer] = []
    for media, inner in kinds:
        offers.extend(
            Offer(media, uid, inner, default=uid == EXPLICIT_VR_LITTLE_ENDIAN) for uid in ordered
        )
        offers.append(Offer(media, AS_STORED, inner))
    return offers


def _frame_offer_list(stored: str) -> list[tuple[MediaType, str, bool]]:
    stored_media = frame_media(stored)
    listed: list[tuple[MediaType, str, bool]] = []
    targets = frame_targets(stored)
    ordered = sorted(targets, key=lambda uid: uid != EXPLICIT_VR_LITTLE_ENDIAN)
    for uid in ordered:
        media = APPLICATION_OCTET_STREAM if is_native(uid) else frame_media(uid)
        default = DEFAULT_SYNTAX.get(media.essence) == uid or (uid == stored and not is_native(uid))
        listed.append((media, uid, default))
    listed.append((APPLICATION_OCTET_STREAM, AS_STORED, False))
    if stored_media.essence != OCTET_STREAM:
        listed.append((stored_media, AS_STORED, False))
    return listed


def frame_offers(stored: str, *, single: bool) -> list[Offer]:
    """Offers for frames stored in ``stored``; single-part ones only for one frame."""
    listed = _frame_offer_list(stored)
    offers = [Offer(MULTIPART_RELATED, uid, media, default) for media, uid, default in listed]
    if single:
        offers.extend(Offer(media, uid, None, default) for media, uid, default in listed)
    return offers


def bulk_offers(*, single: bool) -> list[Offer]:
    """Offers for bulk data: multipart octet-stream, or the bare value when alone."""
    offers = [Offer(MULTIPART_RELATED, None, APPLICATION_OCTET_STREAM)]
    if single:
        offers.append(Offer(APPLICATION_OCTET_STREAM))
    return offers


METADATA_OFFERS = [
    Offer(APPLICATION_DICOM_JSON),
    Offer(APPLICATION_JSON),
    Offer(MULTIPART_RELATED, None, APPLICATION_DICOM_XML),
]
