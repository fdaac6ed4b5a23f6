"""A lean HTTP/1.1 GET for bulk throughput: 1 MiB reads, body counted, not kept.

httpx reads 64 KiB at a time through several layers and spends about a core
on a fast stream, so a retrieve measured with it gauges the load generator as
much as the server. This client parses only what HTTP/1.1 needs to find the
end of the body (``Content-Length``, ``chunked`` or end of stream).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from .load import Reply

READ_BYTES = 1024 * 1024


class LeanConnection:
    """One keep-alive HTTP/1.1 connection to a server, reopened when it closes."""

    def __init__(self) -> None:
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._address: tuple[str, int] | None = None

    async def get(self, url: str, accept: str) -> Reply:
        """GET ``url``; the time covers the last byte received (not the connect)."""
        parts = urlsplit(url)
        address = (parts.hostname or "", parts.port or 80)
        if self._streams is None or self._address != address:
            await self.aclose()
            self._streams = await asyncio.open_connection(*address, limit=READ_BYTES)
            self._address = address
        reader, writer = self._streams
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: {accept}\r\n\r\n"
        start = time.perf_counter()
        try:
            writer.write(request.encode("latin-1"))
            status, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            size = await _read_body(reader, headers)
        except BaseException:
            await self.aclose()
            raise
        seconds = time.perf_counter() - start
        if not _reusable(headers):
            await self.aclose()
        return Reply(status, seconds, size, b"")

    async def aclose(self) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()


def _reusable(headers: dict[str, str]) -> bool:
    framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
    return framed and headers.get("connection", "").lower() != "close"


async def stream_get(url: str, accept: str) -> Reply:
    """GET ``url`` on a connection of its own."""
    connection = LeanConnection()
    try:
        return await connection.get(url, accept)
    finally:
        await connection.aclose()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> int:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    remaining = int(headers["content-length"]) if "content-length" in headers else None
    size = 0
    while remaining is None or size < remaining:
        want = READ_BYTES if remaining is None else min(READ_BYTES, remaining - size)
        piece = await reader.read(want)
        if not piece:
            break
        size += len(piece)
    return size


async def _read_chunked(reader: asyncio.StreamReader) -> int:
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        length = int(line.split(b";", 1)[0], 16)
        if length == 0:
            return size
        left = length
        while left:
            piece = await reader.read(min(READ_BYTES, left))
            if not piece:
                return size
            left -= len(piece)
            size += len(piece)
        await reader.readexactly(2)
