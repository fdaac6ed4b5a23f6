"""The benchmark's lean GET counts exactly the body, whatever framing the server uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from bench.raw_http import LeanConnection, stream_get

pytestmark = pytest.mark.unit

BODY = bytes(range(256)) * 9000  # 2.3 MB, more than two reads


def content_length() -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
    return head + BODY


def chunked() -> bytes:
    pieces = [BODY[:1000], BODY[1000:1_500_000], BODY[1_500_000:]]
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in pieces:
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def until_close() -> bytes:
    return b"HTTP/1.1 406 Not Acceptable\r\nContent-Type: text/plain\r\n\r\n" + BODY


async def serve(answer: bytes) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/dicom-web/studies/1?x=1"


@pytest.mark.parametrize(
    ("make", "status"), [(content_length, 200), (chunked, 200), (until_close, 406)]
)
async def test_the_body_is_counted_exactly(make: Callable[[], bytes], status: int) -> None:
    async for url in serve(make()):
        reply = await stream_get(url, "application/dicom")
        assert (reply.status, reply.size) == (status, len(BODY))


async def answers_on_one_connection(answer: bytes, times: int) -> int:
    """GET ``times`` over one :class:`LeanConnection` from a server that repeats
    ``answer``; each must count the whole body. Returns the connections made."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(answer)
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        connection = LeanConnection()
        try:
            for _ in range(times):
                reply = await connection.get(f"http://127.0.0.1:{port}/x", "*/*")
                assert (reply.status, reply.size) == (200, len(BODY))
        finally:
            await connection.aclose()
    return connections


async def test_a_lean_connection_is_kept_alive_between_framed_answers() -> None:
    assert await answers_on_one_connection(content_length(), 3) == 1


def cuts(size: int) -> list[tuple[int, int]]:
    """Slices of an answer: 7 bytes at a time through the head, the first chunk
    lines and the end, 4099 bytes at a time elsewhere."""
    edges = [*range(0, 1200, 7), *range(1200, size - 100, 4099), *range(size - 100, size, 7)]
    return list(zip(edges, [*edges[1:], size], strict=True))


async def dribble(answer: bytes) -> AsyncIterator[str]:
    """A server writing its answer in small sends (see :func:`cuts`)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for start, stop in cuts(len(answer)):
            writer.write(answer[start:stop])
            await writer.drain()
            await asyncio.sleep(0)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/x"


@pytest.mark.parametrize("make", [content_length, chunked])
async def test_framing_split_across_reads_is_followed(make: Callable[[], bytes]) -> None:
    async for url in dribble(make()):
        reply = await stream_get(url, "*/*")
        assert (reply.status, reply.size) == (200, len(BODY))


async def test_a_chunked_answer_with_trailers_leaves_the_connection_clean() -> None:
    trailer = chunked()[: -len(b"\r\n")] + b"Checksum: 1\r\n\r\n"
    assert await answers_on_one_connection(trailer, 2) == 1


async def test_an_answer_cut_short_is_an_error_not_a_short_count() -> None:
    cut = content_length()[:-1000]
    async for url in serve(cut):
        with pytest.raises(ConnectionError):
            await stream_get(url, "*/*")
