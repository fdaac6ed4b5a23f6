"""API keys for machines: ``skp_<key id>_<secret>``, sent as a bearer token.

The secret is 256 random bits; the index keeps only its SHA-256. A slow
password hash defends guessable secrets; a 256-bit random one cannot be
guessed, and a fast hash keeps every request at one indexed lookup plus one
digest. The key id (48 random bits, public) finds the row; the digest is
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING

from skypacs.errors import BadRequest
from skypacs.index.api_keys import ApiKeyRow, find_api_key, insert_api_key

from .identity import Principal, Unauthorized
from .roles import Role, parse_role

if TYPE_CHECKING:
    from skypacs.index.pool import Connection

__all__ = ["KEY_PREFIX", "create_api_key", "looks_like_api_key", "verify_api_key"]

KEY_PREFIX = "skp_"
_KEY = re.compile(r"^skp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def looks_like_api_key(token: str) -> bool:
    """Whether a bearer token is meant as an API key (rather than a JWT)."""
    return token.startswith(KEY_PREFIX)


async def create_api_key(conn: Connection, *, name: str, role: str) -> tuple[str, ApiKeyRow]:
    """Create a key; return it in clear (shown once) with its stored row."""
    if not _NAME.match(name):
        raise BadRequest("key name: 1 to 64 letters, digits, '.', '_', '@' or '-'")
    try:
        checked = parse_role(role)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = await insert_api_key(
        conn, key_id=key_id, name=name, role=checked.label, secret_sha256=_digest(secret)
    )
    return f"{KEY_PREFIX}{key_id}_{secret}", row


async def verify_api_key(conn: Connection, token: str) -> Principal:
    """The principal of a live key; :class:`Unauthorized` for anything else."""
    match = _KEY.match(token)
    if match is None:
        raise Unauthorized("malformed API key")
    row = await find_api_key(conn, match[1])
    if row is None or not hmac.compare_digest(row.secret_sha256, _digest(match[2])):
        raise Unauthorized("unknown API key")
    if not row.active:
        raise Unauthorized("API key revoked")
    return Principal(
        subject=f"apikey:{row.name}",
        role=Role[row.role.upper()],
        method="apikey",
        key_name=row.name,
    )
