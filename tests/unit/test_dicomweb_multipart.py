"""Streaming multipart/related parser and writer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file

from skypacs.dicomweb.multipart import (
    OutPart,
    Part,
    boundary_from_content_type,
    iter_parts,
    multipart_content_type,
    new_boundary,
    write_multipart,
)
from skypacs.errors import BadRequest, PayloadTooLarge

pytestmark = pytest.mark.unit

LIMITS = {"max_parts": 100, "max_part_header_bytes": 8192, "max_body_bytes": None}


class Source:
    """An async body that records how many bytes the parser pulled from it."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self.pulled = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            piece = next(self._pieces)
        except StopIteration:
            raise StopAsyncIteration from None
        self.pulled += len(piece)
        return piece


def chunked(data: bytes, size: int) -> Source:
    return Source(data[i : i + size] for i in range(0, len(data), size))


def endless(head: bytes, filler: bytes) -> Source:
    def pieces() -> Iterable[bytes]:
        yield head
        while True:
            yield filler

    return Source(pieces())


async def collect(
    body: bytes, boundary: str, chunk_size: int = 65536, **limits: int | None
) -> list[tuple[dict[str, str], bytes]]:
    options = {**LIMITS, **limits}
    parts = []
    async for part in iter_parts(chunked(body, chunk_size), boundary, **options):
        parts.append((dict(part.headers), b"".join([c async for c in part.chunks()])))
    return parts


async def consume(
    source: Source,
    boundary: str,
    seen: list[Part],
    read_limit: int | None = None,
    **limits: int | None,
) -> None:
    """Read every part (whole, when ``read_limit`` is given), recording the parts seen."""
    async for part in iter_parts(source, boundary, **{**LIMITS, **limits}):
        seen.append(part)
        if read_limit is None:
            await part.drain()
        else:
            await part.read(max_bytes=read_limit)


async def out_parts(parts: list[OutPart]) -> AsyncIterator[OutPart]:
    for part in parts:
        yield part


async def written(parts: list[OutPart], boundary: str) -> bytes:
    return b"".join([piece async for piece in write_multipart(out_parts(parts), boundary)])


async def pieces_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def sample_payloads(random_size: int) -> list[bytes]:
    boundary_like = b"\r\n--notTheBoundary\r\n--bound\r\n-"
    return [
        Path(get_testdata_file("CT_small.dcm")).read_bytes(),
        b"",
        os.urandom(random_size),
        b"\r\n" + boundary_like + b"\r\n",
        b"\r",
    ]


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 65536])
async def test_writer_output_round_trips_at_any_chunk_size(chunk_size: int) -> None:
    boundary = "bound4ry-" + new_boundary()
    payloads = sample_payloads(random_size=200_000 if chunk_size >= 64 else 5_000)
    parts = [
        OutPart(
            "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
            pieces_of(payload[:5], payload[5:]) if index % 2 else payload,
            headers={"Content-Location": f"/x/{index}", "Content-Length": str(len(payload))},
        )
        for index, payload in enumerate(payloads)
    ]
    body = await written(parts, boundary)
    parsed = await collect(body, boundary, chunk_size=chunk_size)
    assert [payload for _, payload in parsed] == payloads
    assert parsed[2][0] == {
        "Content-Type": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
        "Content-Location": "/x/2",
        "Content-Length": str(len(payloads[2])),
    }


async def test_part_attributes() -> None:
    body = (
        b'--b\r\ncontent-type: Application/DICOM; Transfer-Syntax="1.2.840.10008.1.2.4.90"\r\n'
        b"CONTENT-LOCATION: /studies/1\r\nX-Long: one\r\n  two\r\n\r\nDATA\r\n--b--\r\n"
    )
    seen = 0
    async for part in iter_parts(chunked(body, 5), "b", **LIMITS):
        seen += 1
        assert part.content_type is not None
        assert part.content_type.essence == "application/dicom"
        assert part.content_type.param("transfer-syntax") == "1.2.840.10008.1.2.4.90"
        assert part.content_location == "/studies/1"
        assert part.headers["Content-Type"] == part.headers["CONTENT-TYPE"]
        assert part.headers["x-long"] == "one two"
        assert await part.read(max_bytes=4) == b"DATA"
    assert seen == 1


async def test_read_refuses_a_part_over_its_limit() -> None:
    body = b"--b\r\n\r\n" + b"z" * 100 + b"\r\n--b--"
    with pytest.raises(PayloadTooLarge):
        await consume(chunked(body, 7), "b", [], read_limit=99)


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ('multipart/related; type="application/dicom"; boundary="xyz 123"', "xyz 123"),
        ("multipart/related; type=application/dicom; boundary=xyz123", "xyz123"),
        ("Multipart/Related; BOUNDARY=AbC; type=application/dicom", "AbC"),
    ],
)
def test_boundary_quoted_or_not(content_type: str, boundary: str) -> None:
    assert boundary_from_content_type(content_type) == boundary


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/related; type=application/dicom",
        'multipart/related; boundary=""',
        "multipart/related; boundary=" + "a" * 201,
        'multipart/related; boundary="ends with space "',
        'multipart/related; boundary="bad\\"quote"',
    ],
)
def test_missing_or_invalid_boundary(content_type: str) -> None:
    """Missing, empty, over-long (beyond the lenient 200) or malformed boundaries."""
    with pytest.raises(BadRequest):
        boundary_from_content_type(content_type)


@pytest.mark.parametrize("chunk_size", [1, 2, 65536])
async def test_interop_variants(chunk_size: int) -> None:
    variants = {
        "leading CRLF": b"\r\n--B\r\nContent-Type: application/dicom\r\n\r\nONE\r\n--B--\r\n",
        "preamble": b"This is a preamble.\r\nIgnore --B not at line start\r\n--B\r\n"
        b"Content-Type: application/dicom\r\n\r\nONE\r\n--B--\r\n",
        "padding": b"--B \t \r\nContent-Type: application/dicom\r\n\r\nONE\r\n--B--  \r\n",
        "epilogue": b"--B\r\nContent-Type: application/dicom\r\n\r\nONE\r\n--B--\r\n"
        b"epilogue --B\r\n",
        "no final CRLF": b"--B\r\nContent-Type: application/dicom\r\n\r\nONE\r\n--B--",
        "LF only": b"--B\nContent-Type: application/dicom\n\nONE\n--B--\n",
    }
    for name, body in variants.items():
        parsed = await collect(body, "B", chunk_size=chunk_size)
        assert parsed == [({"Content-Type": "application/dicom"}, b"ONE")], name


async def test_parts_without_headers_and_empty_bodies() -> None:
    body = b"--B\r\n\r\nfirst\r\n--B\r\n\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n\r\n--B--"
    assert await collect(body, "B", chunk_size=1) == [
        ({}, b"first"),
        ({}, b""),
        ({"Content-Type": "text/plain"}, b""),
    ]


async def test_boundary_prefix_inside_a_body_is_data() -> None:
    payload = b"x\r\n--Bextra\r\n--B-not\r\n--B\tz\r\n--"
    body = b"--B\r\n\r\n" + payload + b"\r\n--B--\r\n"
    for size in (1, 4, 1000):
        assert await collect(body, "B", chunk_size=size) == [({}, payload)]


async def test_empty_multipart_has_no_parts() -> None:
    assert await collect(b"--B--\r\n", "B") == []


async def test_body_built_by_dicomweb_client() -> None:
    content_type = (
        'multipart/related; type="application/dicom"; '
        'boundary="0f3cf5c0-70e0-41ef-baef-c6f9f65ec3e1"'
    )
    datasets = [
        Path(get_testdata_file(name)).read_bytes()
        for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm")
    ]
    body = DICOMwebClient._encode_multipart_message(datasets, content_type)
    boundary = boundary_from_content_type(content_type)
    for size in (1, 1000, 65536):
        parsed = await collect(body, boundary, chunk_size=size)
        assert [payload for _, payload in parsed] == datasets
        assert {headers["Content-Type"] for headers, _ in parsed} == {"application/dicom"}


async def test_dicomweb_client_decodes_writer_output() -> None:
    payloads = [b"frame one", os.urandom(5000), b"\r\n--tail"]
    boundary = new_boundary()
    parts = [OutPart("application/octet-stream; transfer-syntax=*", p) for p in payloads]
    response = requests.Response()
    response._content = await written(parts, boundary)
    response.headers["Content-Type"] = multipart_content_type(
        "application/octet-stream", boundary, "*"
    )
    client = DICOMwebClient(url="http://127.0.0.1:9/dicom-web")
    assert list(client._decode_multipart_message(response, stream=False)) == payloads


async def test_truncated_body_is_bad_request() -> None:
    complete = b"--B\r\nContent-Type: application/dicom\r\n\r\nONE\r\n--B\r\n\r\nTWO\r\n--B--\r\n"
    cut_points = [0, 2, 4, 10, 30, 40, 44, 46, 48, len(complete) - 5, len(complete) - 3]
    for cut in cut_points:
        with pytest.raises(BadRequest, match="truncated multipart body"):
            await collect(complete[:cut], "B", chunk_size=3)


async def test_too_many_parts_stops_at_the_extra_part() -> None:
    one = b"--B\r\nContent-Type: application/dicom\r\n\r\n" + b"x" * 100 + b"\r\n"
    source = chunked(one * 50 + b"--B--\r\n", 64)
    seen: list[Part] = []
    with pytest.raises(PayloadTooLarge) as raised:
        await consume(source, "B", seen, max_parts=3, max_part_header_bytes=1024)
    assert len(seen) == 3
    assert raised.value.status_code == 413
    assert source.pulled < 5 * len(one)


async def test_oversized_part_header_is_refused_early() -> None:
    source = endless(b"--B\r\nX-Huge: ", b"h" * 512)
    with pytest.raises(PayloadTooLarge):
        async for _ in iter_parts(
            source, "B", max_parts=10, max_part_header_bytes=4096, max_body_bytes=None
        ):
            pass
    assert source.pulled <= 4096 + 2 * 512


async def test_many_header_lines_count_towards_the_limit() -> None:
    source = endless(b"--B\r\n", b"X-Line: 1\r\n")
    with pytest.raises(PayloadTooLarge):
        async for _ in iter_parts(
            source, "B", max_parts=10, max_part_header_bytes=1000, max_body_bytes=None
        ):
            pass
    assert source.pulled <= 1100


async def test_body_over_the_limit_is_refused_as_soon_as_exceeded() -> None:
    source = endless(b"--B\r\nContent-Type: application/dicom\r\n\r\n", b"d" * 1000)
    with pytest.raises(PayloadTooLarge):
        await consume(source, "B", [], max_part_header_bytes=1024, max_body_bytes=50_000)
    assert 50_000 < source.pulled <= 51_000


async def test_malformed_part_header_is_bad_request() -> None:
    with pytest.raises(BadRequest):
        await collect(b"--B\r\nno colon here\r\n\r\nx\r\n--B--", "B")
    with pytest.raises(BadRequest):
        await collect(b"--B\r\nContent-Type: nonsense\r\n\r\nx\r\n--B--", "B")


async def test_unread_parts_are_skipped() -> None:
    body = b"--B\r\n\r\n" + b"1" * 10_000 + b"\r\n--B\r\n\r\nsecond\r\n--B--\r\n"
    parts: list[Part] = []
    async for part in iter_parts(chunked(body, 100), "B", **LIMITS):
        parts.append(part)
    assert len(parts) == 2
    assert [c async for c in parts[0].chunks()] == []


async def test_partially_read_part_is_drained_before_the_next() -> None:
    body = b"--B\r\n\r\n" + b"1" * 10_000 + b"\r\n--B\r\n\r\nsecond\r\n--B--\r\n"
    bodies = []
    async for part in iter_parts(chunked(body, 100), "B", **LIMITS):
        async for chunk in part.chunks():
            bodies.append(chunk)
            break
    assert bodies[-1] == b"second"


async def test_memory_is_bounded_by_the_chunk_size() -> None:
    payload = os.urandom(4 * 1024 * 1024)
    body = await written([OutPart("application/dicom", payload)], "B")
    largest = 0
    received = bytearray()
    async for part in iter_parts(chunked(body, 65536), "B", **LIMITS):
        async for chunk in part.chunks():
            largest = max(largest, len(chunk))
            received += chunk
    assert received == payload
    assert largest <= 65536 + 8


async def test_writer_exact_bytes() -> None:
    parts = [
        OutPart("application/dicom", b"AB", headers={"Content-Location": "/a"}),
        OutPart("image/jpeg", pieces_of(b"C", b"", b"D")),
    ]
    assert await written(parts, "XyZ") == (
        b"--XyZ\r\nContent-Type: application/dicom\r\nContent-Location: /a\r\n\r\nAB"
        b"\r\n--XyZ\r\nContent-Type: image/jpeg\r\n\r\nCD\r\n--XyZ--\r\n"
    )
    assert await written([], "XyZ") == b"--XyZ--\r\n"


async def test_writer_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="invalid multipart header"):
        await written([OutPart("image/png\r\nX-Evil: 1", b"")], "B")
    with pytest.raises(ValueError, match="invalid multipart header"):
        await written([OutPart("image/png", b"", headers={"X-A": "1\n2"})], "B")


def test_multipart_content_type() -> None:
    assert multipart_content_type("application/dicom", "abc", "1.2.840.10008.1.2.1") == (
        'multipart/related; type="application/dicom"; boundary=abc; '
        "transfer-syntax=1.2.840.10008.1.2.1"
    )
    assert multipart_content_type("image/jpeg", "a b") == (
        'multipart/related; type="image/jpeg"; boundary="a b"'
    )
    assert boundary_from_content_type(multipart_content_type("image/jpeg", "a b")) == "a b"


def test_new_boundaries_differ_and_are_valid() -> None:
    first, second = new_boundary(), new_boundary()
    assert first != second
    assert boundary_from_content_type(multipart_content_type("application/dicom", first)) == first


def test_orthancs_over_long_boundary_is_accepted() -> None:
    """Orthanc's DICOMweb client sends 73-character boundaries (RFC 2046 says 70)."""
    boundary = "6fbed2fd-7463-42cb-bb9b-90b2523b84aa-6fbed2fd-7463-42cb-bb9b-90b2523b84aa"
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    assert boundary_from_content_type(content_type) == boundary


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100_000])
async def test_part_offsets_point_at_each_body(chunk_size: int) -> None:
    payloads = [b"A" * 100, b"", b"C" * 7]
    body = b"preamble\r\n" + b"".join(
        b"--b\r\nContent-Type: application/dicom\r\n\r\n" + payload + b"\r\n"
        for payload in payloads
    )
    body += b"--b--\r\n"
    head = b"Content-Type: application/dicom\r\n\r\n"
    starts, at = [], body.find(head)
    while at >= 0:
        starts.append(at + len(head))
        at = body.find(head, at + 1)
    offsets = []
    async for part in iter_parts(chunked(body, chunk_size), "b", **LIMITS):
        offsets.append(part.offset)
        assert await part.read(max_bytes=1000) == payloads[len(offsets) - 1]
    assert offsets == starts


#: Bodies that look like a delimiter, or like its start, where chunks are cut.
_NEAR_MISSES = [
    b"\r\n--bnd-x",
    b"\n--bnd",
    b"\r\n--bn",
    b"tail ends in CR\r",
    b"\r\n--bndZ\r\n",
    b"\n",
    b"\r",
    b"--bnd",
]


@pytest.mark.parametrize("chunk_size", [13, 29, 30, 31, 32, 47, 64, 97])
async def test_bodies_near_a_delimiter_at_every_cut(chunk_size: int) -> None:
    payloads = [b"A" * 40 + near + b"B" * 33 + near + b"Z" for near in _NEAR_MISSES]
    body = b"".join(b"--bnd\r\n\r\n" + payload + b"\r\n" for payload in payloads) + b"--bnd--\r\n"
    for shift in range(8):
        parsed = await collect(b"x" * shift + b"\r\n" + body, "bnd", chunk_size=chunk_size)
        assert [payload for _, payload in parsed] == payloads, shift


async def test_a_chunk_that_is_all_body_is_handed_on_uncopied() -> None:
    """Unless its last bytes hold a line break, which might start a delimiter."""
    inner = [b"\x01" * 4096, b"\x02" * 4096 + b"\nxx", b"\x03" * 4096]
    body = [b"--b\r\n\r\n", *inner, b"\r\n--b--\r\n"]
    seen: list[bytes] = []
    async for part in iter_parts(Source(iter(body)), "b", **LIMITS):
        seen.extend([chunk async for chunk in part.chunks()])
    assert b"".join(seen) == b"".join(inner)
    assert [any(chunk is piece for chunk in seen) for piece in inner] == [True, False, True]
