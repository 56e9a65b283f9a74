"""Object-created events from every source that really sends them, as one shape.

    source                               shape                                        key
    Ceph RGW bucket notification (push)  plain JSON {"Records": [...]},               raw
                                         eventSource "ceph:s3", metadata [{key,val}]
    Knative CephSource                   CloudEvent type com.amazonaws.ObjectCreated:*, raw (subject)
                                         data = one RGW record
    AWS S3 event notification            {"Records": [...]}, eventSource "aws:s3"     URL-encoded
    Eventarc (Cloud Storage)             CloudEvent google.cloud.storage.object.v1.*  raw ("name")
                                         data {bucket, name, size: "123"}

Each becomes an `ObjectEvent`; anything else is an `UnknownEvent` error, whose
message never echoes the event. One request names at most MAX_EVENT_RECORDS
objects (RGW and S3 send one a request); more is `TooManyRecords`, none processed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidRequest, TooManyRecords

MAX_EVENT_RECORDS = 100
EventKind = Literal["created", "removed", "other"]


class UnknownEvent(InvalidRequest):
    code = "UNKNOWN_EVENT"


@dataclass(frozen=True)
class ObjectEvent:
    kind: EventKind
    bucket: str
    key: str


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _S3Bucket(_Loose):
    name: str


class _S3Object(_Loose):
    key: str


class _S3Entity(_Loose):
    bucket: _S3Bucket
    object: _S3Object


class S3Record(_Loose):
    """One record of an AWS S3 or Ceph RGW notification."""

    eventSource: str = ""  # noqa: N815 - the wire name
    eventName: str  # noqa: N815
    s3: _S3Entity


class S3Notification(_Loose):
    Records: list[S3Record] = Field(max_length=MAX_EVENT_RECORDS)  # noqa: N815


class StorageObjectData(_Loose):
    """Eventarc's Cloud Storage object payload (int64 fields arrive as strings)."""

    bucket: str
    name: str
    size: str | int | None = None


def _kind(name: str) -> EventKind:
    lowered = name.lower()
    if "objectcreated" in lowered or lowered.endswith(".finalized"):
        return "created"
    if "objectremoved" in lowered or lowered.endswith(".deleted"):
        return "removed"
    return "other"


def from_record(record: S3Record) -> ObjectEvent:
    key = record.s3.object.key
    if record.eventSource.startswith("aws:"):
        key = unquote_plus(key)
    return ObjectEvent(_kind(record.eventName), record.s3.bucket.name, key)


def from_notification(payload: Any) -> list[ObjectEvent]:
    """Plain JSON as RGW and AWS S3 post it."""
    records = payload.get("Records") if isinstance(payload, dict) else None
    if isinstance(records, list) and len(records) > MAX_EVENT_RECORDS:
        raise TooManyRecords(f"an event request may name at most {MAX_EVENT_RECORDS} objects")
    try:
        notification = S3Notification.model_validate(payload)
    except ValidationError:
        raise UnknownEvent("not an S3 event notification (expected {\"Records\": [...]})") from None
    return [from_record(r) for r in notification.Records]


def from_cloud_event(event_type: Any, subject: Any, data: Any) -> list[ObjectEvent]:
    """A CloudEvent (binary or structured), from CephSource or Eventarc. Its `type`
    and `subject` are as the SDK parsed them: a structured event may carry any JSON."""
    if not isinstance(event_type, str) or not isinstance(subject, str | None):
        raise UnknownEvent("a CloudEvent whose type or subject is not a string")
    try:
        if event_type.startswith("google.cloud.storage.object."):
            gcs = StorageObjectData.model_validate(data)
            return [ObjectEvent(_kind(event_type), gcs.bucket, gcs.name)]
        if event_type.startswith("com.amazonaws."):
            record = S3Record.model_validate(data)
            event = from_record(record)
            return [ObjectEvent(_kind(event_type), event.bucket, subject or event.key)]
        if isinstance(data, dict) and "Records" in data:
            return from_notification(data)
    except ValidationError:
        raise UnknownEvent("an object event without the object it names") from None
    raise UnknownEvent("events of this type are not handled")
