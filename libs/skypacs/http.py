"""Shared FastAPI pieces: the app factory, middlewares, errors, probes, route tables.

Every SkyPACS HTTP service is built by :func:`create_app`, so all of them answer
errors the same way (one handler set, small JSON bodies, 500s that never leak
internals), carry CORS headers on every response including errors (browser
clients such as OHIF depend on it), tag each request with an ``X-Request-ID`` and
count it under its route template. Middlewares are pure ASGI so streamed
DICOMweb responses stay streamed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any, cast

import asyncpg
import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skypacs.config import Settings
from skypacs.dicomweb.urls import dicomweb_root, public_base_url
from skypacs.errors import DependencyUnavailable, SkypacsError
from skypacs.observability import (
    UNMATCHED_ROUTE,
    http_metrics,
    log_access,
    metric_method,
    metrics_exposition,
    request_id_var,
)
from skypacs.runtime import Runtime, readiness
from skypacs.security import SecurityGuard

__all__ = [
    "UID_PATTERN",
    "FrameList",
    "InstanceUID",
    "RouteSpec",
    "RuntimeDep",
    "SeriesUID",
    "StudyUID",
    "TagPath",
    "build_router",
    "create_app",
    "error_response",
    "exception_handlers",
    "get_runtime",
]

log = logging.getLogger(__name__)

RuntimeFactory = Callable[[Settings], AbstractAsyncContextManager[Runtime]]

#: PS3.5 §9.1: digits and dots, no leading/trailing/double dot, at most 64 characters.
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
UID_MAX_LENGTH = 64
#: PS3.18 §8.3.5.1.3 (frame list): comma-separated frame numbers, counted from 1.
FRAMES_PATTERN = r"^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8})*$"
#: A bulk data location inside an instance: a tag, optionally nested through sequence items.
TAG_PATH_PATTERN = r"^[0-9A-Fa-f]{8}(/[0-9]{1,6}/[0-9A-Fa-f]{8}){0,8}$"
#: What a malformed path parameter should have been, for 400 details.
PATH_EXPECTATIONS = {
    "study": "a valid UID (digits and dots, at most 64 characters)",
    "series": "a valid UID (digits and dots, at most 64 characters)",
    "instance": "a valid UID (digits and dots, at most 64 characters)",
    "frames": "a comma-separated list of frame numbers counted from 1",
    "tag_path": "a tag path such as 7FE00010 or 00540016/0/00181072",
}
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_RETRY_AFTER_S = DependencyUnavailable.retry_after_s

CORS_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
CORS_ALLOW_HEADERS = ("Accept", "Authorization", "Content-Type", "X-Requested-With")
CORS_EXPOSE_HEADERS = (
    "Content-Range",
    "Content-Type",
    "ETag",
    "Warning",
    "Content-Location",
    "Location",
    "X-Request-ID",
)

#: Backend errors that escape a library unmapped still mean "retry later" (503).
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)
#: The same from the S3 and Kafka clients, which are imported only when configured.
_CLIENT_CONNECTION_ERRORS = (
    ("botocore.exceptions", ("ConnectionError", "HTTPClientError")),
    ("aiohttp", ("ClientConnectionError",)),
    ("aiokafka.errors", ("KafkaConnectionError",)),
)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means a backend could not be reached (a 503, not a 500).

    A client library's classes are looked up only if it is loaded: one that
    was never imported cannot have raised anything.
    """
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    for module_name, names in _CLIENT_CONNECTION_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, tuple(getattr(module, n) for n in names)):
            return True
    return False


# --- error responses -------------------------------------------------------------------


def error_response(
    status: int, error: str, detail: Any, headers: Mapping[str, str] | None = None
) -> Response:
    """The one error body shape: ``{"error": title, "detail": ...}``."""
    body = orjson.dumps({"error": error, "detail": detail})
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _unavailable_response(detail: str, retry_after_s: int = _RETRY_AFTER_S) -> Response:
    headers = {"Retry-After": str(retry_after_s)}
    return error_response(503, DependencyUnavailable.title, detail, headers)


async def _skypacs_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SkypacsError)
    if isinstance(exc, DependencyUnavailable):
        log.warning("dependency unavailable: %s", exc.detail)
        return _unavailable_response(exc.detail, exc.retry_after_s)
    if exc.status_code >= 500:
        log.warning("%s: %s", exc.title, exc.detail)
    return error_response(exc.status_code, exc.title, exc.detail)


def _describe_validation(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    where, name = (loc[0], ".".join(loc[1:])) if loc else ("request", "")
    subject = f"{where} parameter '{name}'" if name else where
    if where == "path" and name in PATH_EXPECTATIONS:
        return f"{subject} is not {PATH_EXPECTATIONS[name]}"
    return f"{subject}: {error.get('msg', 'invalid')}"


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [_describe_validation(item) for item in exc.errors()]
    return error_response(400, "bad request", "; ".join(problems) or "invalid request")


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    try:
        phrase = HTTPStatus(exc.status_code).phrase.lower()
    except ValueError:
        phrase = "error"
    return error_response(exc.status_code, phrase, exc.detail, exc.headers)


ExceptionHandler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def exception_handlers() -> dict[int | type[Exception], ExceptionHandler]:
    """The one handler set every SkyPACS app installs.

    Exceptions none of these take are answered by :class:`ErrorBoundaryMiddleware`:
    backend connection errors as 503 + Retry-After, anything else as a generic 500.
    """
    return {
        SkypacsError: _skypacs_error,
        RequestValidationError: _validation_error,
        StarletteHTTPException: _http_error,
    }


def _handler_for(exc: BaseException) -> ExceptionHandler | None:
    handlers = exception_handlers()
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# --- middlewares (pure ASGI) -----------------------------------------------------------


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestIdMiddleware:
    """Accept a well-formed ``X-Request-ID`` or mint one; echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def route_template(scope: Scope, prefixed: Mapping[int, str]) -> str:
    """The matched route's template (never the raw path: UIDs stay out of labels).

    ``prefixed`` maps routes included under a prefix to their full template, for
    FastAPI versions whose matched route only knows its path inside its router.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    path = prefixed.get(id(route), getattr(route, "path", None))
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class TelemetryMiddleware:
    """Prometheus metrics and one access-log line per request."""

    def __init__(self, app: ASGIApp, service: str, templates: Mapping[int, str]) -> None:
        self.app = app
        self.service = service
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = http_metrics()
        method = str(scope["method"])
        status = 500
        started = time.perf_counter()

        async def send_capturing(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        gauge = metrics.in_progress.labels(self.service, metric_method(method))
        gauge.inc()
        try:
            await self.app(scope, receive, send_capturing)
        finally:
            gauge.dec()
            elapsed = time.perf_counter() - started
            route = route_template(scope, self.templates)
            metrics.observe(
                service=self.service, method=method, route=route, status=status, duration_s=elapsed
            )
            log_access(
                method=method, route=route, status=status, duration_s=elapsed, service=self.service
            )


class ErrorBoundaryMiddleware:
    """Turn any exception no handler took into a generic 500 (or 503) JSON answer.

    It sits inside the CORS middleware so that these answers carry CORS headers
    too. Once a response has started, the exception is logged and re-raised so
    the server aborts the connection instead of ending a truncated body cleanly.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            if started:
                log.exception("request failed after its response started")
                raise
            response = await self._answer(exc, scope, receive)
            await response(scope, receive, send)

    @staticmethod
    async def _answer(exc: Exception, scope: Scope, receive: Receive) -> Response:
        leaf = _leaf(exc)
        handler = _handler_for(leaf)
        if handler is not None and isinstance(leaf, Exception):
            return await handler(Request(scope, receive), leaf)
        if is_connection_error(leaf):
            log.warning("backend connection failed: %s", type(leaf).__name__)
            return _unavailable_response("a backend service is unreachable; retry later")
        log.exception("unhandled error")
        request_id = scope.get("state", {}).get("request_id")
        detail = f"the server failed to answer; quote request id {request_id} when reporting"
        return error_response(500, "internal error", detail)


def _cors(settings: Settings) -> Middleware:
    origins = list(settings.http.cors_allow_origins)
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=CORS_METHODS,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        allow_credentials="*" not in origins,
    )


# --- runtime access and probes ---------------------------------------------------------


def get_runtime(request: Request) -> Runtime:
    """FastAPI dependency: the app's open :class:`Runtime`."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise DependencyUnavailable("the service is starting or stopping")
    return cast(Runtime, runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _probes() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process is running")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: every backend answers")
    async def readyz(request: Request) -> Response:
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is None:
            ready, report = False, {"runtime": "unavailable: not open"}
        else:
            ready, report = await readiness(runtime)
        body = {"status": "ready" if ready else "unavailable", "dependencies": report}
        headers = None if ready else {"Retry-After": str(_RETRY_AFTER_S)}
        return Response(
            orjson.dumps(body), 200 if ready else 503, headers, media_type="application/json"
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        body = await asyncio.to_thread(metrics_exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


# --- route tables ------------------------------------------------------------------------


def _path_param(pattern: str, max_length: int, description: str) -> Any:
    return Path(pattern=pattern, max_length=max_length, description=description)


StudyUID = Annotated[str, _path_param(UID_PATTERN, UID_MAX_LENGTH, "StudyInstanceUID")]
SeriesUID = Annotated[str, _path_param(UID_PATTERN, UID_MAX_LENGTH, "SeriesInstanceUID")]
InstanceUID = Annotated[str, _path_param(UID_PATTERN, UID_MAX_LENGTH, "SOPInstanceUID")]
FrameList = Annotated[str, _path_param(FRAMES_PATTERN, 1024, "Frame numbers, from 1, by ,")]
TagPath = Annotated[str, _path_param(TAG_PATH_PATTERN, 256, "Tag path of the bulk data")]


async def _check_study(study: StudyUID) -> None:
    """Validate ``{study}`` before the endpoint runs."""


async def _check_series(series: SeriesUID) -> None:
    """Validate ``{series}`` before the endpoint runs."""


async def _check_instance(instance: InstanceUID) -> None:
    """Validate ``{instance}`` before the endpoint runs."""


async def _check_frames(frames: FrameList) -> None:
    """Validate ``{frames}`` before the endpoint runs."""


async def _check_tag_path(tag_path: TagPath) -> None:
    """Validate ``{tag_path}`` before the endpoint runs."""


PATH_CHECKS: Mapping[str, Callable[..., Awaitable[None]]] = {
    "study": _check_study,
    "series": _check_series,
    "instance": _check_instance,
    "frames": _check_frames,
    "tag_path": _check_tag_path,
}
_PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


_LOOPBACK = frozenset({"127.0.0.1", "::1"})


def _request_host(request: Request) -> str:
    """The Host header, with the listening port restored where a client dropped it.

    Some clients (the Python dicomweb-client among them) send ``Host: 127.0.0.1``
    to ``127.0.0.1:8080``. When the Host names the very address the request
    arrived on (or ``localhost`` on a loopback socket) and carries no port, the
    socket's port is the one the client used.
    """
    host = request.headers.get("host") or request.url.netloc
    server = request.scope.get("server")
    if not server or server[1] is None or host.rsplit("]", 1)[-1].count(":"):
        return host
    address, port = str(server[0]), int(server[1])
    bare = host.strip("[]")
    same = bare == address or (bare == "localhost" and address in _LOOPBACK)
    if not same or port == (443 if request.url.scheme == "https" else 80):
        return host
    return f"{host}:{port}"


def public_root(request: Request, settings: Settings) -> str:
    """The DICOMweb root URL as the client sees it, for RetrieveURL and BulkDataURI.

    A configured ``SKYPACS_HTTP__PUBLIC_BASE_URL`` wins; otherwise the request's
    Host, and (when trusted) ``X-Forwarded-*`` / ``Forwarded`` from an ingress.
    """
    base = public_base_url(
        request.url.scheme,
        _request_host(request),
        request.headers,
        request.scope.get("root_path", ""),
        settings.http.public_base_url,
        settings.http.trust_forwarded_headers,
    )
    return dicomweb_root(base, settings.http.dicomweb_prefix)


def _media_content(media_types: Iterable[str]) -> dict[str, Any]:
    schema = {"type": "string", "format": "binary"}
    return {media: {"schema": schema} for media in media_types}


@dataclass(frozen=True)
class RouteSpec:
    """One line of a service's route table."""

    method: str
    path: str
    summary: str
    endpoint: Callable[..., Any]
    request_media: tuple[str, ...] = ()
    response_media: tuple[str, ...] = ()

    def openapi_extra(self) -> dict[str, Any] | None:
        """Declare multipart/binary bodies that FastAPI cannot infer."""
        extra: dict[str, Any] = {}
        if self.request_media:
            extra["requestBody"] = {
                "required": True,
                "content": _media_content(self.request_media),
            }
        if self.response_media:
            ok = {"description": "Success", "content": _media_content(self.response_media)}
            extra["responses"] = {"200": ok}
        return extra or None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request (for example an invalid UID)"},
    501: {"description": "Not available in this release"},
    503: {"description": "A backend is unavailable; retry after Retry-After seconds"},
}


def build_router(routes: Sequence[RouteSpec], *, tag: str) -> APIRouter:
    """An APIRouter from a route table; path parameters are validated first."""
    router = APIRouter(tags=[tag])
    for spec in routes:
        checks = []
        for name in _PATH_PARAM.findall(spec.path):
            if name not in PATH_CHECKS:
                raise ValueError(f"{spec.path}: no validator for path parameter {{{name}}}")
            checks.append(Depends(PATH_CHECKS[name]))
        router.add_api_route(
            spec.path,
            spec.endpoint,
            methods=[spec.method],
            summary=spec.summary,
            dependencies=checks,
            openapi_extra=spec.openapi_extra(),
            responses=ERROR_RESPONSES,
            response_class=Response,
            response_model=None,
        )
    return router


# --- the app factory ---------------------------------------------------------------------

ShutdownHook = Callable[[], Awaitable[None]]


def on_shutdown(app: FastAPI, hook: ShutdownHook) -> None:
    """Run ``hook`` when the app stops, after the last request and before the
    runtime (index pool, blob store, events) closes: background work that needs
    them finishes instead of failing."""
    hooks: list[ShutdownHook] = app.state.shutdown_hooks
    hooks.append(hook)


async def _run_shutdown_hooks(app: FastAPI, grace_s: float) -> None:
    """Each hook in turn, each given up to ``grace_s``; a failure is logged, not raised."""
    hooks: list[ShutdownHook] = app.state.shutdown_hooks
    while hooks:
        hook = hooks.pop(0)
        try:
            await asyncio.wait_for(hook(), grace_s)
        except TimeoutError:
            log.warning("background work not finished at shutdown; abandoned")
        except Exception as exc:
            log.warning("background work failed at shutdown: %s", type(exc).__name__)


def _lifespan(
    settings: Settings, runtime_factory: RuntimeFactory
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            try:
                runtime = await stack.enter_async_context(runtime_factory(settings))
            except SkypacsError as exc:
                log.error("cannot start: %s", exc.detail)
                raise
            app.state.runtime = runtime
            guard: SecurityGuard = app.state.security
            stack.push_async_callback(guard.aclose)
            guard.announce()
            try:
                yield
            finally:
                await _run_shutdown_hooks(app, settings.http.shutdown_grace_s)
                app.state.runtime = None

    return lifespan


def _index_pool(app: FastAPI) -> asyncpg.Pool | None:
    """The open runtime's index pool (API keys, audit rows), if the app is running."""
    runtime: Runtime | None = getattr(app.state, "runtime", None)
    pool: asyncpg.Pool | None = getattr(getattr(runtime, "index", None), "pool", None)
    return pool


def _paths(router: APIRouter) -> list[APIRoute]:
    return [route for route in router.routes if isinstance(route, APIRoute)]


def create_app(
    *,
    title: str,
    settings: Settings,
    routers: Sequence[APIRouter],
    runtime_factory: RuntimeFactory,
    service: str | None = None,
) -> FastAPI:
    """A SkyPACS HTTP app: routers under the DICOMweb prefix, probes, errors, CORS.

    The lifespan opens the runtime from ``runtime_factory(settings)`` (stored as
    ``app.state.runtime``) and closes it on shutdown. ``service`` labels the
    metrics (defaults to the title in lower case). Request limits,
    authentication, role checks and the audit trail wrap every route
    (:mod:`skypacs.security`); the audit queue is flushed on shutdown.
    """
    from skypacs import __version__

    name = service or title.lower().replace(" ", "-")
    prefix = settings.http.dicomweb_prefix.rstrip("/")
    templates = {id(route): prefix + route.path for r in routers for route in _paths(r)}
    guard = SecurityGuard.build(settings, lambda: _index_pool(app))
    app = FastAPI(
        title=title,
        version=__version__,
        lifespan=_lifespan(settings, runtime_factory),
        exception_handlers=exception_handlers(),
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(TelemetryMiddleware, service=name, templates=templates),
            _cors(settings),
            Middleware(ErrorBoundaryMiddleware),
            *guard.middlewares(),
        ],
    )
    app.state.settings = settings
    app.state.security = guard
    app.state.runtime = None
    app.state.shutdown_hooks = []
    for router in routers:
        app.include_router(router, prefix=prefix)
    app.include_router(_probes())
    return app
