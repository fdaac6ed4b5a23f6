"""Authentication, roles, the audit trail and request limits for every HTTP app."""

from __future__ import annotations

from .audit import AuditTrail, audit_action, note_instances
from .authenticator import Authenticator, is_loopback_address
from .guard import SecurityGuard
from .identity import Forbidden, Principal, Unauthorized
from .policy import listen_refusal
from .roles import Role, parse_role, required_role

__all__ = [
    "AuditTrail",
    "Authenticator",
    "Forbidden",
    "Principal",
    "Role",
    "SecurityGuard",
    "Unauthorized",
    "audit_action",
    "is_loopback_address",
    "listen_refusal",
    "note_instances",
    "parse_role",
    "required_role",
]
