"""Support for the security tests (no tests here): a real SkyPACS server, a JWKS
server and an identity provider's signing keys.

:func:`running_archive` runs the all-in-one app under uvicorn on a free loopback
port, with its lifespan (runtime, audit flush on shutdown). :class:`Issuer` holds
real RS256 and ES256 private keys, serves their public JWKS from a local HTTP
server and signs tokens with them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from pydantic import SecretStr
from starlette.routing import Route

from skypacs.config import IndexSettings, Settings
from skypacs.services.serve import create_app
from tests.fixtures.ports import free_port

ISSUER = "https://idp.example.test/realms/skypacs"
AUDIENCE = "skypacs"
DICOMWEB = "/dicom-web"


# --- identity provider ---------------------------------------------------------------


def _new_keys() -> dict[str, RSAKey | ECKey]:
    return {
        "RS256": RSAKey.generate_key(2048, {"kid": "rsa-1", "alg": "RS256", "use": "sig"}),
        "ES256": ECKey.generate_key("P-256", {"kid": "ec-1", "alg": "ES256", "use": "sig"}),
    }


@dataclass
class Issuer:
    """Signing keys and the JWKS document a local HTTP server publishes."""

    keys: dict[str, RSAKey | ECKey] = field(default_factory=_new_keys)
    requests: int = 0

    def jwks(self) -> dict[str, Any]:
        return KeySet(list(self.keys.values())).as_dict(private=False)

    def rotate(self, alg: str, kid: str) -> None:
        """A new key (new kid) replaces the one for ``alg``, as at key rotation."""
        params = {"kid": kid, "alg": alg, "use": "sig"}
        if alg == "RS256":
            self.keys[alg] = RSAKey.generate_key(2048, params)
        else:
            self.keys[alg] = ECKey.generate_key("P-256", params)

    def token(self, alg: str = "RS256", **claims: Any) -> str:
        """A token signed by this issuer; ``claims`` override the defaults (None drops one)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "nbf": now - 5,
            "exp": now + 300, "roles": ["reader"],
        }  # fmt: skip
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        key = self.keys[alg]
        return jwt.encode({"alg": alg, "kid": key.kid}, body, key)


def unsigned_token(**claims: Any) -> str:
    """An ``alg=none`` token (RFC 7519 §6): header and claims, empty signature."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300, "roles": ["admin"]}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({**body, **claims})}."


@contextmanager
def jwks_server(issuer: Issuer) -> Iterator[str]:
    """Serve ``issuer``'s JWKS over HTTP on loopback; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer.requests += 1
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/realms/skypacs/certs"
    finally:
        server.shutdown()
        server.server_close()


def oidc_env(jwks_url: str) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": jwks_url,
        "allow_http_loopback_jwks": True,
        "jwks_min_refresh_interval_s": 0,
    }


# --- the archive ---------------------------------------------------------------------------


def archive_settings(dsn: str, data_dir: Path, **sections: Any) -> Settings:
    """Settings on a real test database and a filesystem blob store."""
    return Settings(
        data_dir=data_dir,
        index=IndexSettings(dsn=SecretStr(dsn)),
        storage={"backend": "filesystem", "filesystem": {"fsync": False}},
        **sections,
    )


@dataclass
class Archive:
    """A running SkyPACS server and a client for it."""

    url: str
    client: httpx.AsyncClient
    server: uvicorn.Server

    def dicomweb(self, path: str) -> str:
        return f"{self.url}{DICOMWEB}{path}"


@asynccontextmanager
async def running_archive(
    settings: Settings, factory: Callable[[Settings], FastAPI] = create_app
) -> AsyncIterator[Archive]:
    """An app (default ``skypacs serve``'s) under uvicorn on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(
        factory(settings),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        h11_max_incomplete_event_size=settings.http.max_header_bytes,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during startup")
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            yield Archive(url, client, server)
    finally:
        server.should_exit = True
        await task


async def audit_rows(dsn: str, **where: str) -> list[dict[str, Any]]:
    """Audit rows (oldest first) whose columns equal ``where``."""
    clauses = " AND ".join(f"{col} = ${i}" for i, col in enumerate(where, 1)) or "true"
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT * FROM audit_log WHERE {clauses} ORDER BY id", *where.values()
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def all_routes(routes: Sequence[Any], prefix: str = "") -> list[tuple[str, set[str]]]:
    """Every (path template, methods) of an app, walking included routers."""
    found: list[tuple[str, set[str]]] = []
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None:
            found += all_routes(context.included_router.routes, prefix + context.prefix)
        elif isinstance(route, Route):
            found.append((prefix + route.path, set(route.methods or ())))
    return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
