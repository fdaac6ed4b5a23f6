"""WADO route table: WADO-RS (PS3.18 §10.4), rendered (§10.4.1.1.3), WADO-URI (§9).

Also the delete routes at study, series and instance level, which this archive
serves next to retrieve.
"""

from __future__ import annotations

from skypacs.http import RouteSpec, build_router

STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"
FRAMES = INSTANCE + "/frames/{frames}"

#: PS3.18 §8.7.3: instances as multipart/related DICOM (or a zip of them).
INSTANCES = ('multipart/related; type="application/dicom"',)
METADATA = ("application/dicom+json",)
#: PS3.18 §8.7.3.5: frames and bulk data as multipart/related octet-stream (or pixel media).
BULK = ('multipart/related; type="application/octet-stream"',)
RENDERED = ("image/jpeg", "image/png")
WADO_URI = ("application/dicom", "image/jpeg", "image/png")

ROUTES = (
    RouteSpec("GET", STUDY, "Retrieve a study", response_media=INSTANCES),
    RouteSpec("GET", SERIES, "Retrieve a series", response_media=INSTANCES),
    RouteSpec("GET", INSTANCE, "Retrieve an instance", response_media=INSTANCES),
    RouteSpec("GET", STUDY + "/metadata", "Retrieve study metadata", response_media=METADATA),
    RouteSpec("GET", SERIES + "/metadata", "Retrieve series metadata", response_media=METADATA),
    RouteSpec("GET", INSTANCE + "/metadata", "Retrieve instance metadata", response_media=METADATA),
    RouteSpec("GET", FRAMES, "Retrieve frames", response_media=BULK),
    RouteSpec(
        "GET", INSTANCE + "/bulkdata/{tag_path:path}", "Retrieve bulk data", response_media=BULK
    ),
    RouteSpec("GET", STUDY + "/rendered", "Render a study", response_media=RENDERED),
    RouteSpec("GET", SERIES + "/rendered", "Render a series", response_media=RENDERED),
    RouteSpec("GET", INSTANCE + "/rendered", "Render an instance", response_media=RENDERED),
    RouteSpec("GET", FRAMES + "/rendered", "Render frames", response_media=RENDERED),
    RouteSpec("GET", STUDY + "/thumbnail", "Thumbnail of a study", response_media=RENDERED),
    RouteSpec("GET", SERIES + "/thumbnail", "Thumbnail of a series", response_media=RENDERED),
    RouteSpec("GET", INSTANCE + "/thumbnail", "Thumbnail of an instance", response_media=RENDERED),
    RouteSpec("GET", FRAMES + "/thumbnail", "Thumbnail of a frame", response_media=RENDERED),
    RouteSpec("DELETE", STUDY, "Delete a study"),
    RouteSpec("DELETE", SERIES, "Delete a series"),
    RouteSpec("DELETE", INSTANCE, "Delete an instance"),
    RouteSpec("GET", "/wado", "Retrieve an object by WADO-URI", response_media=WADO_URI),
)

router = build_router(ROUTES, tag="WADO")
