"""Request bodies reach the app whole and uncopied, through a real uvicorn server."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

from skypacs.request_body import BodyPieces, PiecewiseBodyProtocol
from tests.fixtures.raw_http import read_response
from tests.fixtures.uvicorn_server import serving

Scope = dict[str, Any]


class Recorder:
    """An app that reads each POST body and answers with its length."""

    def __init__(self) -> None:
        self.bodies: list[list[bytes]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        pieces: list[bytes] = []
        while True:
            message = await receive()
            assert type(message["body"]) is bytes
            pieces.append(message["body"])
            if not message.get("more_body"):
                break
        self.bodies.append(pieces)
        size = str(sum(map(len, pieces))).encode()
        headers = [(b"content-length", str(len(size)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": size})


def post(port: int, head: bytes, body_pieces: list[bytes]) -> bytes:
    with socket.socket() as sock:
        sock.connect(("127.0.0.1", port))
        sock.sendall(head)
        for piece in body_pieces:
            sock.sendall(piece)
        status, answer = read_response(sock, 1 << 16)
        assert status.startswith(b"HTTP/1.1 200")
        return answer


def test_body_pieces_join_only_several() -> None:
    one = b"x" * 10
    pieces = BodyPieces()
    assert (len(pieces), bytes(pieces)) == (0, b"")
    pieces += one
    assert bytes(pieces) is one
    pieces += b""
    pieces += b"yz"
    assert (len(pieces), bytes(pieces)) == (12, one + b"yz")
    assert bytes(BodyPieces(b"ab")) == b"ab"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_large_body_arrives_exactly(chunked: bool) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    if chunked:
        head = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        parts = [data[i : i + 100_003] for i in range(0, len(data), 100_003)]
        pieces = [b"%x\r\n%s\r\n" % (len(part), part) for part in parts] + [b"0\r\n\r\n"]
    else:
        head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(data)
        pieces = [data[i : i + 65_536] for i in range(0, len(data), 65_536)]
    app = Recorder()
    async with serving(app, PiecewiseBodyProtocol) as port:
        answer = await asyncio.to_thread(post, port, head, pieces)
    assert answer == str(len(data)).encode()
    assert b"".join(app.bodies[0]) == data
