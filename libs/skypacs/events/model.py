"""Lifecycle events as CloudEvents 1.0, and their Kafka binary-mode encoding.

Every event is a CloudEvent (https://github.com/cloudevents/spec, v1.0.2) whose
``type`` is a reverse-DNS name such as ``org.skypacs.instance.stored``; the short
alias (``instance.stored``) is accepted wherever a type is given. Events carry a
``partition_key`` (the StudyInstanceUID) so that all events of one study travel in
order on one Kafka partition, and, once the outbox sequencer has placed them in the
change feed, their ``feed_seq``.

On Kafka, events use binary content mode (CloudEvents Kafka protocol binding 3.2):
attributes travel as ``ce_``-prefixed headers, ``data`` is the JSON message value and
the partition key is the message key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
TYPE_PREFIX = "org.skypacs."
# Extension attribute carrying the change-feed position (CloudEvents extension
# names are lower-case alphanumerics, spec 1.0 section 3.1.1).
FEED_SEQ_ATTRIBUTE = "feedseq"

KafkaHeaders = list[tuple[str, bytes]]


class MalformedEvent(ValueError):
    """A message is not a CloudEvent this library can read."""


class EventType(StrEnum):
    """The lifecycle event types; values are the full reverse-DNS CloudEvents types."""

    INSTANCE_STORED = "org.skypacs.instance.stored"
    INSTANCE_UPDATED = "org.skypacs.instance.updated"
    INSTANCE_DELETED = "org.skypacs.instance.deleted"
    STUDY_COMPLETED = "org.skypacs.study.completed"
    TIER_CHANGED = "org.skypacs.tier.changed"

    @property
    def alias(self) -> str:
        """The short name, e.g. ``instance.stored``."""
        return self.value.removeprefix(TYPE_PREFIX)

    @classmethod
    def parse(cls, name: str) -> EventType:
        """The type named by its full value or short alias; ValueError if unknown."""
        full = name if name.startswith(TYPE_PREFIX) else TYPE_PREFIX + name
        try:
            return cls(full)
        except ValueError:
            raise ValueError(f"unknown event type {name!r}") from None


def resolve_type(name: str) -> str:
    """The full type for a known alias; any other string is returned unchanged."""
    try:
        return EventType.parse(name).value
    except ValueError:
        return name


@dataclass(frozen=True, slots=True)
class Event:
    """One CloudEvent plus its partition key and change-feed position."""

    id: uuid.UUID
    source: str
    type: str
    subject: str | None
    time: datetime
    partition_key: str
    data: dict[str, Any] = field(default_factory=dict)
    feed_seq: int | None = None
    specversion: str = SPEC_VERSION
    datacontenttype: str = JSON_CONTENT_TYPE

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("event time must be timezone-aware")

    def as_cloudevent(self) -> dict[str, Any]:
        """The event in structured JSON form (CloudEvents JSON format 1.0)."""
        body: dict[str, Any] = {
            "specversion": self.specversion,
            "id": str(self.id),
            "source": self.source,
            "type": self.type,
            "time": rfc3339(self.time),
            "datacontenttype": self.datacontenttype,
            "partitionkey": self.partition_key,
            "data": self.data,
        }
        if self.subject is not None:
            body["subject"] = self.subject
        if self.feed_seq is not None:
            body[FEED_SEQ_ATTRIBUTE] = self.feed_seq
        return body


def new_event(
    type: EventType | str,
    *,
    partition_key: str,
    subject: str | None,
    data: Mapping[str, Any],
    source: str,
) -> Event:
    """A fresh event (random id, current UTC time) not yet in the change feed."""
    return Event(
        id=uuid.uuid4(),
        source=source,
        type=resolve_type(str(type)),
        subject=subject,
        time=datetime.now(UTC),
        partition_key=partition_key,
        data=dict(data),
    )


def rfc3339(moment: datetime) -> str:
    """``moment`` as an RFC 3339 UTC timestamp with a ``Z`` suffix."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def kafka_key(event: Event) -> bytes:
    """The Kafka message key: the partition key (StudyInstanceUID)."""
    return event.partition_key.encode()


def kafka_value(event: Event) -> bytes:
    """The Kafka message value: the event data as JSON."""
    return orjson.dumps(event.data)


def kafka_headers(event: Event) -> KafkaHeaders:
    """Binary-mode headers (CloudEvents Kafka binding 3.2.3)."""
    headers: KafkaHeaders = [
        ("ce_specversion", event.specversion.encode()),
        ("ce_id", str(event.id).encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_time", rfc3339(event.time).encode()),
        ("content-type", event.datacontenttype.encode()),
    ]
    if event.subject is not None:
        headers.append(("ce_subject", event.subject.encode()))
    if event.feed_seq is not None:
        headers.append((f"ce_{FEED_SEQ_ATTRIBUTE}", str(event.feed_seq).encode()))
    return headers


def decode_kafka(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]
) -> Event:
    """The event in a binary-mode Kafka message; MalformedEvent if it is not one."""
    attrs = {name: raw.decode("utf-8", "replace") for name, raw in headers}
    specversion = attrs.get("ce_specversion")
    if specversion != SPEC_VERSION:
        raise MalformedEvent(f"unsupported CloudEvents specversion {specversion!r}")
    try:
        return Event(
            id=uuid.UUID(attrs["ce_id"]),
            source=attrs["ce_source"],
            type=attrs["ce_type"],
            subject=attrs.get("ce_subject"),
            time=_parse_time(attrs.get("ce_time")),
            partition_key=(key or b"").decode("utf-8", "replace"),
            data=_parse_data(value),
            feed_seq=_parse_feed_seq(attrs.get(f"ce_{FEED_SEQ_ATTRIBUTE}")),
            specversion=specversion,
            datacontenttype=attrs.get("content-type", JSON_CONTENT_TYPE),
        )
    except KeyError as exc:
        raise MalformedEvent(f"missing required header {exc.args[0]}") from None
    except ValueError as exc:
        raise MalformedEvent(str(exc)) from None


def _parse_time(raw: str | None) -> datetime:
    if raw is None:
        raise KeyError("ce_time")
    moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        raise ValueError("ce_time has no UTC offset")
    return moment.astimezone(UTC)


def _parse_data(value: bytes | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError("message value is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("event data must be a JSON object")
    return data


def _parse_feed_seq(raw: str | None) -> int | None:
    return None if raw is None else int(raw)
