"""Media type parsing and rendering."""

from __future__ import annotations

import pytest

from skypacs.dicomweb.media_types import (
    APPLICATION_DICOM,
    APPLICATION_DICOM_JSON,
    IMAGE_DICOM_RLE,
    MULTIPART_RELATED,
    MediaType,
    parse_media_type,
)
from skypacs.errors import BadRequest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text",
    [
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
        'Multipart/Related;Transfer-Syntax="*";TYPE="application/octet-stream"',
        "  multipart/related ;  type = application/octet-stream ;transfer-syntax= * ",
        'multipart/related; type="application/octet-stream"; transfer-syntax=*;',
    ],
)
def test_quoted_and_unquoted_forms_parse_alike(text: str) -> None:
    media_type = parse_media_type(text)
    assert media_type.essence == "multipart/related"
    assert media_type.param("type") == "application/octet-stream"
    assert media_type.param("TRANSFER-SYNTAX") == "*"
    assert set(media_type.params) == {"type", "transfer-syntax"}


def test_quoted_values_may_hold_separators_and_escapes() -> None:
    media_type = parse_media_type(r'multipart/related; boundary="a;b,c=d \"e\""; type=x/y')
    assert media_type.param("boundary") == 'a;b,c=d "e"'
    assert media_type.param("type") == "x/y"


def test_values_keep_their_case_and_the_first_repeat_wins() -> None:
    media_type = parse_media_type("multipart/related; boundary=AbC; boundary=other")
    assert media_type.param("boundary") == "AbC"


def test_parameters_without_value_are_skipped() -> None:
    media_type = parse_media_type("application/dicom;; charset; q=0.5")
    assert media_type.params == {"q": "0.5"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "application",
        "application/",
        "/dicom",
        "appli cation/dicom",
        'multipart/related; type="application/dicom',
        "multipart/related; boundary=a b",
        "application/dicom\r\nX-Injected: 1",
        "text/plain; na me=1",
    ],
)
def test_unparseable_is_bad_request(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_media_type(text)


def test_rendering_quotes_only_where_needed() -> None:
    media_type = (
        MULTIPART_RELATED.with_param("type", "application/dicom")
        .with_param("transfer-syntax", "1.2.840.10008.1.2.1")
        .with_param("boundary", "abc-123")
    )
    assert str(media_type) == (
        'multipart/related; type="application/dicom"; '
        "transfer-syntax=1.2.840.10008.1.2.1; boundary=abc-123"
    )
    assert str(MediaType("text", "plain", {"title": 'a "b"'})) == r'text/plain; title="a \"b\""'
    assert str(APPLICATION_DICOM.with_param("transfer-syntax", "*")) == (
        "application/dicom; transfer-syntax=*"
    )


def test_rendered_form_parses_back_to_an_equal_value() -> None:
    original = MediaType("multipart", "related", {"type": "a/b", "x": "1 2"})
    assert parse_media_type(str(original)) == original
    assert hash(parse_media_type(str(original))) == hash(original)


def test_constants_render_their_essence() -> None:
    assert str(APPLICATION_DICOM_JSON) == "application/dicom+json"
    assert str(IMAGE_DICOM_RLE) == "image/x-dicom-rle"
    assert parse_media_type("Application/DICOM+JSON").same_essence(APPLICATION_DICOM_JSON)


def test_without_params() -> None:
    media_type = parse_media_type("application/dicom; transfer-syntax=*; q=0.2")
    assert media_type.without_params("q").params == {"transfer-syntax": "*"}
    assert media_type.without_params() == APPLICATION_DICOM
