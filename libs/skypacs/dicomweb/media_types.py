"""Media type values: parsing, canonical rendering and the DICOMweb constants.

Parsing follows RFC 9110 §8.3.1 (``type "/" subtype *( OWS ";" OWS parameter )``)
but is lenient where real DICOMweb clients are sloppy (PS3.18 §8.7): parameter
values may be quoted or not, even when they contain ``/`` (``type=application/dicom``),
names are matched case-insensitively, empty parameters (``;;``, a trailing ``;``)
and parameters without a value are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from skypacs.errors import BadRequest

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_UNQUOTED = re.compile(r"[\s\"\\\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_token(text: str) -> bool:
    """True when ``text`` is an RFC 9110 token and needs no quoting."""
    return _TOKEN.fullmatch(text) is not None


def quote_if_needed(value: str) -> str:
    """Render a parameter value: bare when a token, otherwise a quoted-string."""
    if is_token(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def split_unquoted(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` outside quoted-strings (backslash escapes honoured).

    Raises :class:`BadRequest` for an unterminated quoted-string.
    """
    pieces: list[str] = []
    start = 0
    in_quotes = False
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif in_quotes:
            if char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == separator:
            pieces.append(text[start:index])
            start = index + 1
    if in_quotes:
        raise BadRequest(f"unterminated quoted string in {text!r}")
    pieces.append(text[start:])
    return pieces


def _unquote(raw: str, source: str) -> str:
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise BadRequest(f"malformed quoted parameter value in {source!r}")
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    if _BAD_UNQUOTED.search(raw):
        raise BadRequest(f"malformed parameter value {raw!r} in {source!r}")
    return raw


def _parse_params(pieces: list[str], source: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for piece in pieces:
        name, equals, raw = piece.partition("=")
        name = name.strip().lower()
        if not equals or not name:
            continue
        if not is_token(name):
            raise BadRequest(f"malformed parameter name {name!r} in {source!r}")
        params.setdefault(name, _unquote(raw.strip(), source))
    return params


def parse_media_type(text: str) -> MediaType:
    """Parse a media type such as ``multipart/related; type="application/dicom"``.

    Type and subtype are lower-cased; parameter names are lower-cased and their
    values unquoted (case preserved: a boundary is case-sensitive). The first
    occurrence of a repeated parameter wins. Raises :class:`BadRequest` when the
    text is not a media type.
    """
    if _CONTROL.search(text):
        raise BadRequest("control character in media type")
    essence, *pieces = split_unquoted(text, ";")
    type_, slash, subtype = essence.strip().partition("/")
    type_, subtype = type_.strip(), subtype.strip()
    if not slash or not is_token(type_) or not is_token(subtype):
        raise BadRequest(f"malformed media type {text.strip()!r}")
    return MediaType(type_.lower(), subtype.lower(), _parse_params(pieces, text))


@dataclass(frozen=True, slots=True)
class MediaType:
    """A media type with parameters; ``params`` keys are lower-case, values unquoted."""

    type: str
    subtype: str
    params: Mapping[str, str] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.type, self.subtype, tuple(sorted(self.params.items()))))

    def __str__(self) -> str:
        rendered = [self.essence]
        rendered.extend(f"{name}={quote_if_needed(value)}" for name, value in self.params.items())
        return "; ".join(rendered)

    @property
    def essence(self) -> str:
        """``type/subtype`` without parameters."""
        return f"{self.type}/{self.subtype}"

    @property
    def is_wildcard(self) -> bool:
        """True for ``*/*`` and ``type/*`` ranges."""
        return self.subtype == "*"

    def param(self, name: str) -> str | None:
        """The value of parameter ``name`` (case-insensitive), or None."""
        return self.params.get(name.lower())

    def with_param(self, name: str, value: str) -> MediaType:
        """A copy with ``name`` set to ``value`` (appended, or replaced in place)."""
        params = dict(self.params)
        params[name.lower()] = value
        return MediaType(self.type, self.subtype, params)

    def without_params(self, *names: str) -> MediaType:
        """A copy without the named parameters (all parameters when none are named)."""
        drop = {name.lower() for name in names}
        kept = {k: v for k, v in self.params.items() if drop and k not in drop}
        return MediaType(self.type, self.subtype, kept)

    def same_essence(self, other: MediaType) -> bool:
        """True when both have the same ``type/subtype``, parameters ignored."""
        return self.type == other.type and self.subtype == other.subtype


def _constant(essence: str) -> MediaType:
    type_, _, subtype = essence.partition("/")
    return MediaType(type_, subtype)


APPLICATION_DICOM = _constant("application/dicom")
APPLICATION_DICOM_JSON = _constant("application/dicom+json")
APPLICATION_DICOM_XML = _constant("application/dicom+xml")
APPLICATION_JSON = _constant("application/json")
APPLICATION_OCTET_STREAM = _constant("application/octet-stream")
APPLICATION_PDF = _constant("application/pdf")
MULTIPART_RELATED = _constant("multipart/related")
IMAGE_JPEG = _constant("image/jpeg")
IMAGE_JLS = _constant("image/jls")
IMAGE_JP2 = _constant("image/jp2")
IMAGE_JPX = _constant("image/jpx")
IMAGE_JPHC = _constant("image/jphc")
IMAGE_DICOM_RLE = _constant("image/x-dicom-rle")
IMAGE_PNG = _constant("image/png")
IMAGE_GIF = _constant("image/gif")
VIDEO_MPEG = _constant("video/mpeg")
VIDEO_MP4 = _constant("video/mp4")
TEXT_PLAIN = _constant("text/plain")
ANY = _constant("*/*")
