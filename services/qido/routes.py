"""QIDO-RS route table (PS3.18 §10.6): search studies, series and instances."""

from __future__ import annotations

from skypacs.http import RouteSpec, build_router

from .search import (
    search_instances,
    search_series,
    search_series_instances,
    search_studies,
    search_study_instances,
    search_study_series,
)

#: PS3.18 §10.6.3: search results as DICOM JSON (default) or Native DICOM Model XML.
RESULTS = ("application/dicom+json", 'multipart/related; type="application/dicom+xml"')

ROUTES = (
    RouteSpec(
        "GET", "/studies", "Search for studies", endpoint=search_studies, response_media=RESULTS
    ),
    RouteSpec(
        "GET",
        "/studies/{study}/series",
        "Search for series of a study",
        endpoint=search_study_series,
        response_media=RESULTS,
    ),
    RouteSpec(
        "GET", "/series", "Search for series", endpoint=search_series, response_media=RESULTS
    ),
    RouteSpec(
        "GET",
        "/studies/{study}/series/{series}/instances",
        "Search for instances of a series",
        endpoint=search_series_instances,
        response_media=RESULTS,
    ),
    RouteSpec(
        "GET",
        "/studies/{study}/instances",
        "Search for instances of a study",
        endpoint=search_study_instances,
        response_media=RESULTS,
    ),
    RouteSpec(
        "GET",
        "/instances",
        "Search for instances",
        endpoint=search_instances,
        response_media=RESULTS,
    ),
)

router = build_router(ROUTES, tag="QIDO-RS")
