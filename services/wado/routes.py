"""WADO route table: WADO-RS (PS3.18 §10.4), rendered (§10.4.1.1.3), WADO-URI (§9).

Also the delete routes at study, series and instance level, which this archive
serves next to retrieve.
"""

from __future__ import annotations

from skypacs.http import RouteSpec, build_router

from .bulkdata import retrieve_bulkdata
from .delete import delete_instance, delete_series, delete_study
from .frames import retrieve_frames
from .instances import retrieve_instance, retrieve_series, retrieve_study
from .metadata import instance_metadata, series_metadata, study_metadata
from .rendered import render_frames, render_instance, render_series, render_study
from .thumbnail import thumbnail_frames, thumbnail_instance, thumbnail_series, thumbnail_study
from .wado_uri import retrieve_wado_uri

STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"
FRAME_LIST = INSTANCE + "/frames/{frames}"

#: PS3.18 §8.7.3: instances as multipart/related DICOM (or a zip of them).
INSTANCES = ('multipart/related; type="application/dicom"', "application/dicom")
METADATA = ("application/dicom+json", 'multipart/related; type="application/dicom+xml"')
#: PS3.18 §8.7.3.5: frames and bulk data as multipart/related octet-stream (or pixel media).
BULK = ('multipart/related; type="application/octet-stream"', "application/octet-stream")
FRAMES = (
    *BULK,
    'multipart/related; type="image/jpeg"',
    'multipart/related; type="image/jls"',
    'multipart/related; type="image/jp2"',
    'multipart/related; type="image/x-dicom-rle"',
)
#: PS3.18 §8.7.4: rendered media; several frames may come as multipart/related of them.
RENDERED = (
    "image/jpeg",
    "image/png",
    'multipart/related; type="image/jpeg"',
    'multipart/related; type="image/png"',
)
RENDERED_INSTANCE = (*RENDERED, "image/gif", "application/pdf")
THUMBNAIL = ("image/jpeg", "image/png")
WADO_URI = ("application/dicom", "image/jpeg", "image/png", "image/gif", "application/pdf")

ROUTES = (
    RouteSpec("GET", STUDY, "Retrieve a study", retrieve_study, response_media=INSTANCES),
    RouteSpec("GET", SERIES, "Retrieve a series", retrieve_series, response_media=INSTANCES),
    RouteSpec("GET", INSTANCE, "Retrieve an instance", retrieve_instance, response_media=INSTANCES),
    RouteSpec(
        "GET",
        STUDY + "/metadata",
        "Retrieve study metadata",
        study_metadata,
        response_media=METADATA,
    ),
    RouteSpec(
        "GET",
        SERIES + "/metadata",
        "Retrieve series metadata",
        series_metadata,
        response_media=METADATA,
    ),
    RouteSpec(
        "GET",
        INSTANCE + "/metadata",
        "Retrieve instance metadata",
        instance_metadata,
        response_media=METADATA,
    ),
    RouteSpec("GET", FRAME_LIST, "Retrieve frames", retrieve_frames, response_media=FRAMES),
    RouteSpec(
        "GET",
        INSTANCE + "/bulkdata/{tag_path:path}",
        "Retrieve bulk data",
        retrieve_bulkdata,
        response_media=BULK,
    ),
    RouteSpec("GET", STUDY + "/rendered", "Render a study", render_study, response_media=RENDERED),
    RouteSpec(
        "GET", SERIES + "/rendered", "Render a series", render_series, response_media=RENDERED
    ),
    RouteSpec(
        "GET",
        INSTANCE + "/rendered",
        "Render an instance",
        render_instance,
        response_media=RENDERED_INSTANCE,
    ),
    RouteSpec(
        "GET", FRAME_LIST + "/rendered", "Render frames", render_frames, response_media=RENDERED
    ),
    RouteSpec(
        "GET",
        STUDY + "/thumbnail",
        "Thumbnail of a study",
        thumbnail_study,
        response_media=THUMBNAIL,
    ),
    RouteSpec(
        "GET",
        SERIES + "/thumbnail",
        "Thumbnail of a series",
        thumbnail_series,
        response_media=THUMBNAIL,
    ),
    RouteSpec(
        "GET",
        INSTANCE + "/thumbnail",
        "Thumbnail of an instance",
        thumbnail_instance,
        response_media=THUMBNAIL,
    ),
    RouteSpec(
        "GET",
        FRAME_LIST + "/thumbnail",
        "Thumbnail of a frame",
        thumbnail_frames,
        response_media=THUMBNAIL,
    ),
    RouteSpec("DELETE", STUDY, "Delete a study", delete_study),
    RouteSpec("DELETE", SERIES, "Delete a series", delete_series),
    RouteSpec("DELETE", INSTANCE, "Delete an instance", delete_instance),
    RouteSpec(
        "GET", "/wado", "Retrieve an object by WADO-URI", retrieve_wado_uri, response_media=WADO_URI
    ),
)

router = build_router(ROUTES, tag="WADO")
