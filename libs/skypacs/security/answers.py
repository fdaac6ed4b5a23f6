"""Small JSON error answers written straight from ASGI middleware."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.responses import Response

__all__ = ["json_error"]


def json_error(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The shared error body shape ``{"error": title, "detail": ...}``."""
    body = orjson.dumps({"error": error, "detail": detail})
    return Response(body, status_code=status, headers=headers, media_type="application/json")
