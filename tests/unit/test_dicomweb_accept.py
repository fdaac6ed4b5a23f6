"""Accept parsing and negotiation as WADO uses it."""

from __future__ import annotations

import pytest

from skypacs.dicomweb.accept import (
    AS_STORED,
    AcceptItem,
    Offer,
    accept_from_request,
    negotiate,
    offers_for,
    parse_accept,
)
from skypacs.dicomweb.media_types import (
    APPLICATION_DICOM,
    APPLICATION_DICOM_JSON,
    APPLICATION_OCTET_STREAM,
    IMAGE_JLS,
    IMAGE_JPEG,
    IMAGE_PNG,
    MULTIPART_RELATED,
)
from skypacs.errors import BadRequest, NotAcceptable

pytestmark = pytest.mark.unit

EXPLICIT_LE = "1.2.840.10008.1.2.1"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
JPEG_LS = "1.2.840.10008.1.2.4.80"


def instance_offers() -> list[Offer]:
    """What WADO offers for an instance resource."""
    syntaxes = [AS_STORED, EXPLICIT_LE, J2K_LOSSLESS, RLE]
    return [
        *offers_for(
            MULTIPART_RELATED,
            inner_type=APPLICATION_DICOM,
            transfer_syntaxes=syntaxes,
            default_transfer_syntax=EXPLICIT_LE,
        ),
        *offers_for(
            APPLICATION_DICOM, transfer_syntaxes=syntaxes, default_transfer_syntax=EXPLICIT_LE
        ),
    ]


def frame_offers() -> list[Offer]:
    """What WADO offers for frames of a JPEG-LS instance."""
    return [
        *offers_for(
            MULTIPART_RELATED,
            inner_type=APPLICATION_OCTET_STREAM,
            transfer_syntaxes=[AS_STORED, EXPLICIT_LE],
            default_transfer_syntax=EXPLICIT_LE,
        ),
        *offers_for(
            MULTIPART_RELATED,
            inner_type=IMAGE_JLS,
            transfer_syntaxes=[JPEG_LS],
            default_transfer_syntax=JPEG_LS,
        ),
    ]


@pytest.mark.parametrize(
    "header",
    [
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
        'multipart/related; transfer-syntax="*"; TYPE="application/octet-stream"',
    ],
)
def test_interop_frame_accept_forms_choose_as_stored(header: str) -> None:
    chosen = negotiate(parse_accept(header), frame_offers())
    assert chosen.media_type == MULTIPART_RELATED
    assert chosen.inner_type == APPLICATION_OCTET_STREAM
    assert chosen.transfer_syntax == AS_STORED
    assert chosen.resolve_transfer_syntax(JPEG_LS) == JPEG_LS


def test_parse_accept_reads_q_type_and_quoted_transfer_syntax() -> None:
    items = parse_accept(
        'multipart/related; type="application/dicom"; transfer-syntax="1.2.840.10008.1.2.1";'
        " q=0.7, application/dicom+json;q=0.3 , */*;q=0.1"
    )
    assert [item.media_type.essence for item in items] == [
        "multipart/related",
        "application/dicom+json",
        "*/*",
    ]
    assert [item.q for item in items] == [0.7, 0.3, 0.1]
    assert items[0].inner_type == APPLICATION_DICOM
    assert items[0].transfer_syntax == EXPLICIT_LE
    assert "q" not in items[0].media_type.params


def test_commas_inside_quotes_do_not_split_items() -> None:
    items = parse_accept('application/json; foo="a,b", image/png')
    assert [item.media_type.essence for item in items] == ["application/json", "image/png"]


def test_absent_or_blank_accept_means_anything() -> None:
    for header in (None, "", "   "):
        assert [str(item.media_type) for item in parse_accept(header)] == ["*/*"]


def test_malformed_items_are_skipped() -> None:
    items = parse_accept("application/dicom; q=high, garbage, image/png; q=0.5, image/jpeg;q=7")
    assert [(item.media_type.essence, item.q) for item in items] == [
        ("image/png", 0.5),
        ("image/jpeg", 1.0),
    ]


def test_all_items_malformed_is_bad_request() -> None:
    with pytest.raises(BadRequest):
        parse_accept("garbage, application/dicom; q=nan")


def test_absent_transfer_syntax_means_the_default() -> None:
    chosen = negotiate(
        parse_accept('multipart/related; type="application/dicom"'), instance_offers()
    )
    assert (chosen.media_type, chosen.inner_type) == (MULTIPART_RELATED, APPLICATION_DICOM)
    assert chosen.transfer_syntax == EXPLICIT_LE
    assert chosen.default


def test_wildcard_gets_the_servers_first_default() -> None:
    chosen = negotiate(parse_accept("*/*"), instance_offers())
    assert chosen.media_type == MULTIPART_RELATED
    assert chosen.transfer_syntax == EXPLICIT_LE


def test_explicit_transfer_syntax_is_honoured_or_refused() -> None:
    header = f"multipart/related; type=application/dicom; transfer-syntax={J2K_LOSSLESS}"
    assert negotiate(parse_accept(header), instance_offers()).transfer_syntax == J2K_LOSSLESS
    with pytest.raises(NotAcceptable) as raised:
        negotiate(
            parse_accept("multipart/related; type=application/dicom; transfer-syntax=1.2.3"),
            instance_offers(),
        )
    assert raised.value.status_code == 406


def test_single_part_application_dicom() -> None:
    chosen = negotiate(parse_accept("application/dicom"), instance_offers())
    assert (chosen.media_type, chosen.inner_type, chosen.transfer_syntax) == (
        APPLICATION_DICOM,
        None,
        EXPLICIT_LE,
    )


def test_highest_q_wins_over_order_and_specificity() -> None:
    header = (
        f"multipart/related; type=application/dicom; transfer-syntax={RLE}; q=0.4, "
        f"multipart/related; type=application/dicom; transfer-syntax={J2K_LOSSLESS}; q=0.9"
    )
    assert negotiate(parse_accept(header), instance_offers()).transfer_syntax == J2K_LOSSLESS


def test_more_specific_range_sets_the_quality() -> None:
    header = "application/dicom; q=0, */*"
    chosen = negotiate(parse_accept(header), instance_offers())
    assert chosen.media_type == MULTIPART_RELATED
    with pytest.raises(NotAcceptable):
        negotiate(
            parse_accept(header), offers_for(APPLICATION_DICOM, default_transfer_syntax=EXPLICIT_LE)
        )


def test_equal_quality_prefers_the_more_specific_match() -> None:
    offers = [*offers_for(APPLICATION_DICOM_JSON), *offers_for(IMAGE_PNG)]
    assert negotiate(parse_accept("*/*, image/png"), offers).media_type == IMAGE_PNG
    assert negotiate(parse_accept("image/*, */*"), offers).media_type == IMAGE_PNG


def test_server_order_breaks_ties() -> None:
    offers = [*offers_for(IMAGE_JPEG), *offers_for(IMAGE_PNG)]
    assert negotiate(parse_accept("image/png, image/jpeg"), offers).media_type == IMAGE_JPEG
    assert negotiate(parse_accept("image/*"), list(reversed(offers))).media_type == IMAGE_PNG


def test_inner_type_must_match() -> None:
    header = "multipart/related; type=image/jls; transfer-syntax=*"
    chosen = negotiate(parse_accept(header), frame_offers())
    assert (chosen.inner_type, chosen.transfer_syntax) == (IMAGE_JLS, JPEG_LS)
    with pytest.raises(NotAcceptable):
        negotiate(parse_accept("multipart/related; type=image/jp2"), frame_offers())


def test_multipart_without_type_takes_any_inner_type() -> None:
    chosen = negotiate(parse_accept("multipart/related; transfer-syntax=*"), frame_offers())
    assert (chosen.inner_type, chosen.transfer_syntax) == (APPLICATION_OCTET_STREAM, AS_STORED)


def test_offers_without_transfer_syntax_ignore_the_parameter() -> None:
    offers = offers_for(APPLICATION_DICOM_JSON)
    chosen = negotiate(parse_accept(f"application/dicom+json; transfer-syntax={RLE}"), offers)
    assert chosen.media_type == APPLICATION_DICOM_JSON
    assert chosen.transfer_syntax is None


def test_empty_item_list_means_anything() -> None:
    assert negotiate([], offers_for(APPLICATION_DICOM_JSON)).media_type == APPLICATION_DICOM_JSON


def test_nothing_acceptable_is_406() -> None:
    with pytest.raises(NotAcceptable):
        negotiate(parse_accept("text/html, image/*"), offers_for(APPLICATION_DICOM_JSON))


def test_offers_for_adds_the_default_once() -> None:
    offers = offers_for(
        APPLICATION_DICOM, transfer_syntaxes=[RLE, RLE], default_transfer_syntax=EXPLICIT_LE
    )
    assert [(o.transfer_syntax, o.default) for o in offers] == [(RLE, False), (EXPLICIT_LE, True)]


def test_accept_query_overrides_header() -> None:
    items = accept_from_request("application/dicom", "application/dicom+json")
    assert [item.media_type for item in items] == [APPLICATION_DICOM_JSON]


def test_accept_query_repeated_and_comma_separated() -> None:
    items = accept_from_request(
        "image/png",
        ['multipart/related; type="application/dicom", application/json', "image/jpeg"],
    )
    assert [item.media_type.essence for item in items] == [
        "multipart/related",
        "application/json",
        "image/jpeg",
    ]


def test_accept_query_with_unencoded_plus_sign() -> None:
    items = accept_from_request(None, "application/dicom json")
    assert items == [AcceptItem(APPLICATION_DICOM_JSON)]
    items = accept_from_request(None, "image/png, application/dicom json; q=0.5")
    assert items[1] == AcceptItem(APPLICATION_DICOM_JSON, q=0.5)


def test_empty_accept_query_falls_back_to_header() -> None:
    assert accept_from_request("image/png", [""])[0].media_type == IMAGE_PNG
    assert accept_from_request(None, None)[0].media_type.essence == "*/*"
