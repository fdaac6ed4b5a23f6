"""One ASGI middleware that authenticates, authorizes and audits every request.

It runs before routing, so it covers every route of every app, including
routes added later and unknown paths (deny by default). The required role
comes from :func:`~skypacs.security.roles.required_role`; requests under the
DICOMweb prefix (patient data) are audited after they finish, with the UIDs of
the matched route and, for STOW-RS, of each instance stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skypacs.errors import SkypacsError
from skypacs.index.audit_log import AuditRow

from .answers import json_error
from .audit import STATE_KEY, AuditTrail, InstanceRef, audit_action
from .authenticator import Authenticator
from .identity import Forbidden, Principal, Unauthorized
from .roles import required_role

__all__ = ["SecurityMiddleware"]

UNAUTHENTICATED = "unauthenticated"
UNMATCHED = "unmatched"
_MAX_QUERY_AUDIT = 2048
_LEVELS = {"studies": "study", "series": "series", "instances": "instance"}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UID_MAX = 64


def uids_in_path(path: str) -> dict[str, str]:
    """Study/series/instance UIDs named by a DICOMweb path that no route matched yet.

    Refused requests never reach routing; their target is still worth recording.
    """
    segments = path.split("/")
    found: dict[str, str] = {}
    for name, value in pairwise(segments):
        key = _LEVELS.get(name)
        if key and len(value) <= _UID_MAX and _UID.match(value):
            found[key] = value
    return found


def _outcome(status: int) -> str:
    if status in (401, 403):
        return "denied"
    return "success" if status < 400 else "failure"


class SecurityMiddleware:
    """Authenticate, check the role, run the request, write the audit record."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        trail: AuditTrail,
        audited_prefix: str,
        open_metrics: bool,
        trust_forwarded: bool,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.trail = trail
        self.audited_prefix = audited_prefix.rstrip("/")
        self.open_metrics = open_metrics
        self.trust_forwarded = trust_forwarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = required_role(scope["method"], scope["path"], open_metrics=self.open_metrics)
        if needed is None:
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.authenticator.authenticate(scope)
        except (Unauthorized, Forbidden) as exc:
            await self._refuse(scope, receive, send, exc, None)
            return
        if not principal.may(needed):
            detail = f"role {principal.role.label} may not do this ({needed.label} needed)"
            await self._refuse(scope, receive, send, Forbidden(detail), principal)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self._run(scope, receive, send, principal)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exc: Unauthorized | Forbidden,
        principal: Principal | None,
    ) -> None:
        self._audit(scope, principal, exc.status_code)
        headers = {"WWW-Authenticate": exc.challenge} if isinstance(exc, Unauthorized) else {}
        await json_error(exc.status_code, exc.title, exc.detail, headers)(scope, receive, send)

    async def _run(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        status = 500

        async def send_capturing(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_capturing)
        except SkypacsError as exc:
            status = exc.status_code
            raise
        finally:
            self._audit(scope, principal, status)

    # --- audit records --------------------------------------------------------------

    def _audited(self, scope: Scope) -> bool:
        path = str(scope["path"])
        return path == self.audited_prefix or path.startswith(self.audited_prefix + "/")

    def _client(self, scope: Scope) -> str | None:
        if self.trust_forwarded:
            for key, value in scope.get("headers", ()):
                if key.lower() == b"x-forwarded-for":
                    return bytes(value).decode("latin-1").split(",")[0].strip()[:64]
        client = scope.get("client")
        return str(client[0]) if client else None

    def _template(self, scope: Scope) -> str:
        """The matched route's full template (routers may know only their inner path)."""
        path = getattr(scope.get("route"), "path", None)
        if not isinstance(path, str):
            return UNMATCHED
        prefix = self.audited_prefix
        return path if path == prefix or path.startswith(prefix + "/") else prefix + path

    def _audit(self, scope: Scope, principal: Principal | None, status: int) -> None:
        if not self._audited(scope):
            return
        route = self._template(scope)
        params: dict[str, Any] = scope.get("path_params") or uids_in_path(str(scope["path"]))
        noted: list[InstanceRef] | None = scope.get("state", {}).get(STATE_KEY)
        targets: list[InstanceRef] = noted or [
            (params.get("study"), params.get("series"), params.get("instance"), status < 400)
        ]
        query = bytes(scope.get("query_string", b"")).decode("latin-1")[:_MAX_QUERY_AUDIT]
        common = {
            "occurred_at": datetime.now(UTC),
            "request_id": scope.get("state", {}).get("request_id"),
            "subject": principal.subject if principal else UNAUTHENTICATED,
            "key_name": principal.key_name if principal else None,
            "auth_method": principal.method if principal else "none",
            "role": principal.role.label if principal else None,
            "action": audit_action(str(scope["method"]), route),
            "method": str(scope["method"]),
            "route": route,
            "query": query or None,
            "client_address": self._client(scope),
        }
        for study, series, instance, ok in targets:
            outcome = _outcome(status) if ok or status >= 400 else "failure"
            self.trail.record(
                AuditRow(
                    **common,
                    study_uid=study,
                    series_uid=series,
                    sop_instance_uid=instance,
                    status=status,
                    outcome=outcome,
                )
            )
