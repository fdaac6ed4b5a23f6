"""The SkyPACS error hierarchy.

Each error carries the HTTP status it maps to and, where DICOM defines one, a
failure reason code (PS3.18 Table 10.5.3-1 for STOW-RS, PS3.4 Annex C for DIMSE).
One exception handler turns them into responses; internals never leak.
``retriable`` says whether the same request may succeed later.
"""

from __future__ import annotations


class SkypacsError(Exception):
    """Base of every error SkyPACS raises on purpose."""

    status_code: int = 500
    failure_reason: int | None = None
    retriable: bool = False
    title: str = "internal error"

    def __init__(self, detail: str | None = None, *, failure_reason: int | None = None) -> None:
        self.detail = detail or self.title
        if failure_reason is not None:
            self.failure_reason = failure_reason
        super().__init__(self.detail)


class BadRequest(SkypacsError):
    status_code = 400
    title = "bad request"


class InvalidUID(BadRequest):
    title = "invalid UID"


class NotFound(SkypacsError):
    status_code = 404
    title = "not found"


class NotAcceptable(SkypacsError):
    status_code = 406
    title = "not acceptable"


class Conflict(SkypacsError):
    status_code = 409
    title = "conflict"


class PayloadTooLarge(SkypacsError):
    status_code = 413
    title = "payload too large"


class UnsupportedMediaType(SkypacsError):
    status_code = 415
    title = "unsupported media type"


class DependencyUnavailable(SkypacsError):
    """A backend (index, blob store, broker) cannot be reached: 503 + Retry-After."""

    status_code = 503
    retriable = True
    title = "service unavailable"
    retry_after_s: int = 5


class StorageFull(SkypacsError):
    """Out of storage: 507, DICOM failure 0xA700 (out of resources)."""

    status_code = 507
    failure_reason = 0xA700
    retriable = True
    title = "insufficient storage"
