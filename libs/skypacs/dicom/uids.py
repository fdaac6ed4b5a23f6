"""DICOM Unique Identifier checks (PS3.5 section 9.1).

The standard forbids leading zeros in UID components other than a lone ``0``,
but such UIDs occur in real archives. :func:`validate_uid` therefore rejects only
what breaks the basic grammar or the 64-character limit; :func:`is_strict_uid`
reports full conformance so callers can warn instead of refusing.
"""

from __future__ import annotations

import re
from typing import Final

from skypacs.errors import InvalidUID

#: The lenient grammar enforced at every edge: digits separated by single dots.
UID_PATTERN: Final = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: PS3.5 9.1 proper: no component starts with ``0`` unless it is exactly ``0``.
STRICT_UID_PATTERN: Final = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
UID_MAX_LENGTH: Final = 64


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` matches the basic UID grammar and length limit."""
    return len(value) <= UID_MAX_LENGTH and UID_PATTERN.fullmatch(value) is not None


def is_strict_uid(value: str) -> bool:
    """Whether ``value`` also has no leading-zero components (PS3.5 9.1)."""
    return len(value) <= UID_MAX_LENGTH and STRICT_UID_PATTERN.fullmatch(value) is not None


def validate_uid(value: str, *, field: str) -> str:
    """Return ``value`` (without its NUL padding) or raise :class:`InvalidUID`.

    UI values are padded to even length with a trailing NUL (PS3.5 6.2), which
    is stripped; anything else outside the grammar is rejected, naming ``field``.
    """
    uid = value.rstrip("\x00")
    if not uid:
        raise InvalidUID(f"{field} is missing or empty")
    if len(uid) > UID_MAX_LENGTH:
        raise InvalidUID(f"{field} is longer than {UID_MAX_LENGTH} characters")
    if UID_PATTERN.fullmatch(uid) is None:
        raise InvalidUID(f"{field} is not a valid UID (digits separated by dots)")
    return uid


#: SkyPACS's Implementation Class UID (PS3.7 D.3.3.2), a UUID-derived UID (PS3.5 B.2).
IMPLEMENTATION_CLASS_UID: Final = "2.25.25311354215489586910655363752048971248"
IMPLEMENTATION_VERSION_NAME: Final = "SKYPACS_010"
