"""QIDO-RS route table (PS3.18 §10.6): search studies, series and instances."""

from __future__ import annotations

from skypacs.http import RouteSpec, build_router

#: PS3.18 §10.6.3: search results as DICOM JSON.
RESULTS = ("application/dicom+json",)

ROUTES = (
    RouteSpec("GET", "/studies", "Search for studies", response_media=RESULTS),
    RouteSpec(
        "GET", "/studies/{study}/series", "Search for series of a study", response_media=RESULTS
    ),
    RouteSpec("GET", "/series", "Search for series", response_media=RESULTS),
    RouteSpec(
        "GET",
        "/studies/{study}/series/{series}/instances",
        "Search for instances of a series",
        response_media=RESULTS,
    ),
    RouteSpec(
        "GET",
        "/studies/{study}/instances",
        "Search for instances of a study",
        response_media=RESULTS,
    ),
    RouteSpec("GET", "/instances", "Search for instances", response_media=RESULTS),
)

router = build_router(ROUTES, tag="QIDO-RS")
