"""CloudEvents model and the Kafka binary-mode encoding."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from skypacs.events.model import (
    Event,
    EventType,
    MalformedEvent,
    decode_kafka,
    kafka_headers,
    kafka_key,
    kafka_value,
    new_event,
    resolve_type,
)

pytestmark = pytest.mark.unit

STUDY = "1.2.826.0.1.3680043.8.498.1"


def stored_event() -> Event:
    return new_event(
        "instance.stored",
        partition_key=STUDY,
        subject=f"studies/{STUDY}/series/1.2.3/instances/1.2.3.4",
        data={"sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "size": 1024, "tags": ["a"]},
        source="/skypacs/stow",
    )


def test_short_alias_resolves_to_the_full_type() -> None:
    assert EventType.parse("study.completed") is EventType.STUDY_COMPLETED
    assert EventType.parse("org.skypacs.tier.changed") is EventType.TIER_CHANGED
    assert EventType.INSTANCE_DELETED.alias == "instance.deleted"
    assert resolve_type("com.example.other") == "com.example.other"
    with pytest.raises(ValueError, match="unknown event type"):
        EventType.parse("instance.exploded")


def test_new_event_has_the_cloudevents_required_attributes() -> None:
    event = stored_event()
    assert event.type == "org.skypacs.instance.stored"
    assert event.specversion == "1.0"
    assert event.datacontenttype == "application/json"
    assert event.time.tzinfo is not None
    assert event.feed_seq is None
    assert isinstance(event.id, uuid.UUID)


def test_binary_mode_headers_carry_every_attribute() -> None:
    event = replace(stored_event(), feed_seq=42)
    headers = dict(kafka_headers(event))
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == str(event.id).encode()
    assert headers["ce_source"] == b"/skypacs/stow"
    assert headers["ce_type"] == b"org.skypacs.instance.stored"
    assert headers["ce_subject"] == f"studies/{STUDY}/series/1.2.3/instances/1.2.3.4".encode()
    assert headers["content-type"] == b"application/json"
    assert headers["ce_time"].endswith(b"Z")
    assert headers["ce_feedseq"] == b"42"
    assert kafka_key(event) == STUDY.encode()
    assert orjson.loads(kafka_value(event)) == event.data


def test_binary_mode_round_trip_gives_back_the_same_event() -> None:
    event = replace(stored_event(), feed_seq=7)
    decoded = decode_kafka(kafka_key(event), kafka_value(event), kafka_headers(event))
    assert decoded == event


def test_round_trip_without_subject_and_with_a_non_utc_time() -> None:
    moment = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    event = replace(stored_event(), subject=None, time=moment)
    decoded = decode_kafka(kafka_key(event), kafka_value(event), kafka_headers(event))
    assert decoded.subject is None
    assert decoded.time == moment
    assert decoded.time.tzinfo == UTC
    assert "ce_subject" not in dict(kafka_headers(event))


def test_structured_form_lists_the_attributes() -> None:
    event = replace(stored_event(), feed_seq=3)
    body = event.as_cloudevent()
    assert body["specversion"] == "1.0"
    assert body["id"] == str(event.id)
    assert body["feedseq"] == 3
    assert body["partitionkey"] == STUDY
    assert body["data"] == event.data


@pytest.mark.parametrize(
    ("drop", "message"),
    [("ce_specversion", "specversion"), ("ce_id", "ce_id"), ("ce_time", "ce_time")],
)
def test_messages_missing_required_headers_are_rejected(drop: str, message: str) -> None:
    event = stored_event()
    headers = [(name, value) for name, value in kafka_headers(event) if name != drop]
    with pytest.raises(MalformedEvent, match=message):
        decode_kafka(kafka_key(event), kafka_value(event), headers)


def test_non_json_or_non_object_values_are_rejected() -> None:
    event = stored_event()
    with pytest.raises(MalformedEvent, match="not JSON"):
        decode_kafka(kafka_key(event), b"\x00\x01", kafka_headers(event))
    with pytest.raises(MalformedEvent, match="JSON object"):
        decode_kafka(kafka_key(event), b"[1, 2]", kafka_headers(event))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        replace(stored_event(), time=datetime(2024, 1, 1))
