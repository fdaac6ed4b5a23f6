"""Zero-copy file sends through a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from skypacs.sendfile import FileSpan, Piece, SendfileHttpToolsProtocol, file_sender
from tests.fixtures.raw_http import read_response
from tests.fixtures.uvicorn_server import serving as uvicorn_serving

Scope = dict[str, Any]
Handler = Callable[[Scope, Any, Any], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    """uvicorn with the sendfile protocol serving ``handler`` on a free port."""
    async with uvicorn_serving(handler, SendfileHttpToolsProtocol) as port:
        yield port


def sending(pieces: Callable[[], list[Piece]], length: int) -> Handler:
    """An app answering every GET with ``pieces`` through the file sender."""
    outcome: dict[str, object] = {}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        sender = file_sender(scope)
        assert sender is not None
        headers = [(b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            delivered = await sender.send(pieces())
        except Exception as exc:
            outcome["error"] = exc
            raise
        outcome["delivered"] = delivered
        if delivered:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    app.outcome = outcome  # type: ignore[attr-defined]
    return app


def fetch(port: int, *, read_bytes: int = 1 << 20, rcvbuf: int | None = None) -> bytes:
    """GET / and read until the body is complete or the server closes: the body."""
    with socket.socket() as sock:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        head, body = read_response(sock, read_bytes)
        assert head.startswith(b"HTTP/1.1 200")
        return body


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(12 * 1024 * 1024))
    return path


async def test_pieces_arrive_in_order_and_whole(big_file: Path) -> None:
    data = big_file.read_bytes()
    fd = os.open(big_file, os.O_RDONLY)
    try:
        pieces: list[Piece] = [
            b"head-",
            FileSpan(fd, 5, 1000),
            FileSpan(fd, 0, 0),
            b"",
            memoryview(b"-middle-"),
            FileSpan(fd, 4096, len(data) - 4096),
            b"-tail",
        ]
        expected = b"head-" + data[5:1005] + b"-middle-" + data[4096:] + b"-tail"
        app = sending(lambda: pieces, len(expected))
        async with serving(app) as port:
            # A small receive buffer read slowly keeps the server's socket full,
            # so the sender waits for it both in its thread and on the loop.
            body = await asyncio.to_thread(fetch, port, read_bytes=4096, rcvbuf=8192)
    finally:
        os.close(fd)
    assert body == expected
    assert app.outcome == {"delivered": True}  # type: ignore[attr-defined]


async def test_a_span_past_the_end_of_its_file_cuts_the_connection(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(b"x" * 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        app = sending(lambda: [FileSpan(fd, 0, 5000)], 5000)
        async with serving(app) as port:
            body = await asyncio.to_thread(fetch, port)
    finally:
        os.close(fd)
    assert body == b"x" * 1000  # the client sees a short body, not a padded one
    assert type(app.outcome["error"]).__name__ == "FileShrunk"  # type: ignore[attr-defined]


async def test_a_client_that_leaves_ends_the_send_quietly(big_file: Path) -> None:
    fd = os.open(big_file, os.O_RDONLY)
    size = big_file.stat().st_size
    try:
        app = sending(lambda: [FileSpan(fd, 0, size)] * 8, size * 8)
        async with serving(app) as port:
            await asyncio.to_thread(_read_then_leave, port)
            for _ in range(200):
                if "delivered" in app.outcome or "error" in app.outcome:  # type: ignore[attr-defined]
                    break
                await asyncio.sleep(0.05)
    finally:
        os.close(fd)
    assert app.outcome == {"delivered": False}  # type: ignore[attr-defined]


def _read_then_leave(port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


async def test_pieces_longer_than_the_content_length_are_refused(tmp_path: Path) -> None:
    app = sending(lambda: [b"0123456789"], 5)
    async with serving(app) as port:
        body = await asyncio.to_thread(fetch, port)
    assert body == b""
    assert isinstance(app.outcome["error"], RuntimeError)  # type: ignore[attr-defined]


async def test_a_chunked_response_gets_no_file_sends() -> None:
    refused: list[BaseException] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        sender = file_sender(scope)
        assert sender is not None
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert not sender.usable()
        try:
            await sender.send([b"abc"])
        except RuntimeError as exc:
            refused.append(exc)
        await send({"type": "http.response.body", "body": b"abc", "more_body": False})

    async with serving(app) as port:
        raw = await asyncio.to_thread(_get_raw, port)
    assert raw.endswith(b"3\r\nabc\r\n0\r\n\r\n")
    assert len(refused) == 1


def _get_raw(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data
