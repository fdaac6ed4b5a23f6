"""STOW-RS route table (PS3.18 §10.5): store instances into the archive."""

from __future__ import annotations

from skypacs.http import RouteSpec, build_router

from .store import store_instances

#: PS3.18 §10.5.1.1: the request payload is multipart/related of DICOM or DICOM JSON
#: (with bulk data parts), or a single application/dicom instance.
STOW_REQUEST = (
    'multipart/related; type="application/dicom"',
    'multipart/related; type="application/dicom+json"',
    "application/dicom",
)
#: PS3.18 §10.5.3: the store response (exactly this media type, no charset).
STOW_RESPONSE = ("application/dicom+json",)

ROUTES = (
    RouteSpec(
        "POST",
        "/studies",
        "Store instances",
        endpoint=store_instances,
        request_media=STOW_REQUEST,
        response_media=STOW_RESPONSE,
    ),
    RouteSpec(
        "POST",
        "/studies/{study}",
        "Store instances of one study",
        endpoint=store_instances,
        request_media=STOW_REQUEST,
        response_media=STOW_RESPONSE,
    ),
)

router = build_router(ROUTES, tag="STOW-RS")
