"""Request hygiene at the edge: header size, query string encoding, time limit.

- Headers larger than ``http.max_header_bytes`` in total: 431 (RFC 6585 §5).
- A query string whose percent-decoded bytes are not UTF-8 (PS3.18 §8.3.4 query
  values are UTF-8): 400, rather than a decoding failure deeper down.
- No response started within ``http.request_timeout_s``: 408. Once a response
  has started (a long download), the limit no longer applies.
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .answers import json_error

__all__ = ["RequestLimitsMiddleware", "header_bytes", "valid_query_string"]


def header_bytes(scope: Scope) -> int:
    """Size of the request headers as sent (name, ``: ``, value, CRLF)."""
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


def _utf8(raw: bytes) -> bool:
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def undecodable_parameter(raw: bytes) -> str | None:
    """The first query parameter that is not UTF-8 once percent-decoded, if any.

    Returns its name (or ``"?"`` when the name itself is undecodable); the value
    is never echoed, it may carry patient data.
    """
    for pair in raw.split(b"&"):
        name, _, value = pair.partition(b"=")
        if not _utf8(name):
            return "?"
        if not _utf8(value):
            return unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")[:64]
    return None


def valid_query_string(raw: bytes) -> bool:
    """Whether the query string, percent-decoded, is valid UTF-8."""
    return undecodable_parameter(raw) is None


class RequestLimitsMiddleware:
    """Refuse oversize headers and undecodable queries; time-limit the answer."""

    def __init__(self, app: ASGIApp, *, max_header_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if header_bytes(scope) > self.max_header_bytes:
            limit = self.max_header_bytes
            answer = json_error(431, "request header fields too large", f"over {limit} bytes")
            await answer(scope, receive, send)
            return
        name = undecodable_parameter(scope.get("query_string", b""))
        if name is not None:
            detail = f"query parameter '{name}' is not valid UTF-8"
            answer = json_error(400, "bad request", detail)
            await answer(scope, receive, send)
            return
        await self._timed(scope, receive, send)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        deadline = asyncio.timeout(self.timeout_s)

        async def send_started(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, send_started)
        except TimeoutError:
            if started or not deadline.expired():
                raise
            detail = f"no answer within {self.timeout_s:g} s"
            answer = json_error(408, "request timeout", detail, {"Connection": "close"})
            await answer(scope, receive, send)
