"""Public URLs for RetrieveURL (0008,1190) and BulkDataURI values.

Clients must never see an internal host name, so absolute URLs are built from
the base the client used: a configured public base URL wins; otherwise, when
proxies are trusted, ``X-Forwarded-*`` headers and then RFC 7239 ``Forwarded``
are honoured; otherwise the request's own scheme, Host and root path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from skypacs.dicom.uids import is_valid_uid
from skypacs.dicomweb.media_types import split_unquoted
from skypacs.errors import BadRequest, InvalidUID

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*")
_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _first(headers: Mapping[str, str], name: str) -> str | None:
    """The first value of a comma-separated header: the one the outermost proxy set."""
    value = _header(headers, name)
    if value is None:
        return None
    first = value.split(",", 1)[0].strip()
    return first or None


def valid_host(host: str) -> bool:
    """True for ``name[:port]``, ``a.b.c.d[:port]`` or ``[v6][:port]``, with a sane port."""
    if len(host) > 255 or _HOST.fullmatch(host) is None:
        return False
    port = _split_port(host)[1]
    return port is None or 0 < int(port) < 65536


def _split_port(host: str) -> tuple[str, str | None]:
    name, colon, port = host.rpartition(":")
    if not colon or name.endswith(":") or "]" in port:
        return host, None
    return name, port


def _forwarded_pairs(headers: Mapping[str, str]) -> dict[str, str]:
    """Parameters of the first element of an RFC 7239 ``Forwarded`` header."""
    value = _header(headers, "forwarded")
    if not value:
        return {}
    try:
        element = split_unquoted(value, ",")[0]
        pieces = split_unquoted(element, ";")
    except BadRequest:
        return {}
    pairs: dict[str, str] = {}
    for piece in pieces:
        name, equals, raw = piece.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        if equals:
            pairs.setdefault(name.strip().lower(), raw)
    return pairs


def _proto(value: str | None) -> str | None:
    lowered = (value or "").lower()
    return lowered if lowered in _SCHEMES else None


def _prefix(value: str | None) -> str | None:
    if value is None:
        return None
    prefix = "/" + value.strip().strip("/")
    return prefix.rstrip("/") if _PREFIX.fullmatch(prefix) else None


def _with_port(host: str, port: str | None, scheme: str) -> str:
    if port is None or not port.isdigit() or not 0 < int(port) < 65536:
        return host
    name = _split_port(host)[0]
    return name if _DEFAULT_PORTS[scheme] == port else f"{name}:{port}"


def public_base_url(
    scheme: str,
    host: str,
    headers: Mapping[str, str],
    root_path: str,
    configured: str | None,
    trust_forwarded: bool,
) -> str:
    """The absolute URL clients reach this application at, without a trailing ``/``.

    ``host`` is the request's Host value and ``root_path`` the ASGI root path.
    With ``trust_forwarded``, ``X-Forwarded-Proto/Host/Port/Prefix`` (first value
    of each) win over ``Forwarded: proto=;host=``, which wins over the request;
    forwarded values that are malformed are ignored, and ``X-Forwarded-Prefix``
    replaces ``root_path``. Raises :class:`BadRequest` when the request's own
    Host is malformed and nothing better is known.
    """
    if configured:
        return configured.strip().rstrip("/")
    proto = _proto(scheme) or "http"
    prefix = _prefix(root_path) or ""
    forwarded_host: str | None = None
    port: str | None = None
    if trust_forwarded:
        pairs = _forwarded_pairs(headers)
        proto = _proto(_first(headers, "x-forwarded-proto")) or _proto(pairs.get("proto")) or proto
        candidates = (_first(headers, "x-forwarded-host"), pairs.get("host"))
        forwarded_host = next((h for h in candidates if h and valid_host(h)), None)
        port = _first(headers, "x-forwarded-port")
        forwarded_prefix = _prefix(_first(headers, "x-forwarded-prefix"))
        prefix = prefix if forwarded_prefix is None else forwarded_prefix
    public_host = forwarded_host or host.strip()
    if not valid_host(public_host):
        raise BadRequest("invalid Host header")
    return f"{proto}://{_with_port(public_host, port, proto)}{prefix}"


def _uid(value: str) -> str:
    if not is_valid_uid(value):
        raise InvalidUID(f"invalid UID {value!r}")
    return value


def dicomweb_root(base_url: str, dicomweb_prefix: str) -> str:
    """``base_url`` joined with the DICOMweb prefix (e.g. ``/dicom-web``)."""
    prefix = dicomweb_prefix.strip().strip("/")
    base = base_url.rstrip("/")
    return f"{base}/{prefix}" if prefix else base


def study_url(root: str, study_uid: str) -> str:
    """``{root}/studies/{study}``."""
    return f"{root.rstrip('/')}/studies/{_uid(study_uid)}"


def series_url(root: str, study_uid: str, series_uid: str) -> str:
    """``{root}/studies/{study}/series/{series}``."""
    return f"{study_url(root, study_uid)}/series/{_uid(series_uid)}"


def instance_url(root: str, study_uid: str, series_uid: str, instance_uid: str) -> str:
    """``{root}/studies/{study}/series/{series}/instances/{instance}``."""
    return f"{series_url(root, study_uid, series_uid)}/instances/{_uid(instance_uid)}"


def frames_url(
    root: str, study_uid: str, series_uid: str, instance_uid: str, frames: Sequence[int]
) -> str:
    """``…/instances/{instance}/frames/{n,m,…}`` with frame numbers counted from 1."""
    if not frames or any(number < 1 for number in frames):
        raise ValueError("frame numbers start at 1")
    listed = ",".join(str(number) for number in frames)
    return f"{instance_url(root, study_uid, series_uid, instance_uid)}/frames/{listed}"
