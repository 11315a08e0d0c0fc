"""CloudEvents 1.0 over Kafka (contract section 2.10): output headers, structured input.

Outputs use the Kafka protocol binding's binary mode: the value stays the record as
the contract defines it (section 6), and the event attributes travel as `ce_*`
headers, so consumers that ignore CloudEvents see no change. Inputs may come in
structured mode (`application/cloudevents+json`): the value is a JSON envelope whose
`data` is the event; `event_data` unwraps it.

Pure: no Faust, no Kafka. Header builders take the values the processor already holds
(the output's wire dict and its bytes), so a record costs a few small encodes, and
no JSON is parsed again.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

from models.errors import RejectedRecord

Headers = list[tuple[str, bytes]]

SPECVERSION: Final = "1.0"
# Binary mode: `content-type` describes the value (the event data), as the binding says.
DATA_CONTENT_TYPE: Final = b"application/json"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"

TYPE_ALERT: Final = "com.profitwatch.alert."  # + the alert's kind
TYPE_SNAPSHOT: Final = "com.profitwatch.snapshot"
TYPE_DEADLETTER: Final = "com.profitwatch.deadletter"

# Every ce_id this service derives (snapshots, dead letters) is a UUIDv5 in its own
# namespace, so it can never equal an alert_id (those are uuid5 in NAMESPACE_URL).
ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:profitwatch:cloudevents")
_NS: Final = ID_NAMESPACE.bytes

_SPEC: Final = ("ce_specversion", SPECVERSION.encode())
_CONTENT: Final = ("content-type", DATA_CONTENT_TYPE)


def source_of(app_id: str) -> str:
    """`ce_source`: the application, not the worker process.

    Consumers de-duplicate by (source, id), and a re-send may come from another worker
    (after a rebalance or a crash): a per-process source would make it a new event. A
    relative URI-reference, which CloudEvents allows, since no URN namespace is ours."""
    return "/profitwatch/" + quote(app_id, safe="")


def _uuid5(name: bytes) -> str:
    """uuid.uuid5 over bytes (it takes text only): SHA-1 of namespace + name, with the
    version and variant bits set and formatted by hand (`str(uuid.UUID(...))` costs
    four times as much, per snapshot)."""
    b = bytearray(hashlib.sha1(_NS + name, usedforsecurity=False).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50  # version 5
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _headers(
    event_id: str, source: str, type_: str, time: str | None, subject: str | None
) -> Headers:
    out = [
        _SPEC,
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", type_.encode()),
    ]
    if time:  # optional in CloudEvents: left out rather than sent empty
        out.append(("ce_time", time.encode()))
    if subject:
        out.append(("ce_subject", subject.encode("utf-8", "surrogatepass")))
    out.append(_CONTENT)
    return out


def alert_headers(source: str, alert: Mapping[str, Any]) -> Headers:
    """An alert's attributes, from its wire dict: ce_id is its `alert_id` (stable for a
    re-send, contract section 5), ce_time its `as_of`."""
    return _headers(
        alert["alert_id"],
        source,
        TYPE_ALERT + alert["kind"],
        alert.get("as_of"),
        alert.get("customer_id"),
    )


def snapshot_id(customer_id: str, value: bytes, revision: int) -> str:
    """A snapshot's ce_id: UUIDv5 of its customer, its value bytes and `revision`.

    The value bytes, not a few fields: a referral credit or link changes a snapshot
    without moving `events_applied` or `as_of`, so those alone would give two different
    snapshots one id. Hashing the value keeps a re-send (the same state after a
    duplicate, a redelivery or a rebalance) on the same id, since the snapshot is
    built from the state alone. `revision` (the processor passes the sum of the state's
    applied positions, which only grows) tells apart a state that returned to an
    earlier value byte for byte (a credit undone by a return's) from that earlier one."""
    name = b"snapshot\x00%s\x00%d\x00%s" % (
        customer_id.encode("utf-8", "surrogatepass"),
        revision,
        value,
    )
    return _uuid5(name)


def snapshot_headers(
    source: str, snapshot: Mapping[str, Any], value: bytes, revision: int = 0
) -> Headers:
    """A snapshot's attributes, from its wire dict and the value bytes sent."""
    cid = snapshot["customer_id"]
    return _headers(
        snapshot_id(cid, value, revision), source, TYPE_SNAPSHOT, snapshot.get("as_of"), cid
    )


def dead_letter_id(topic: str, partition: int | None, offset: int | None, original: bytes) -> str:
    """A dead letter's ce_id: UUIDv5 of its source record, where it was consumed and its
    bytes. A redelivered record is dead-lettered again with the same source, so the
    same id. The bytes too: a record rejected after its re-keying is reported under its
    input topic with the internal partition and offset (section 6.4), which an input
    record of that topic can share."""
    name = b"deadletter\x00%s\x00%s\x00%s\x00%s" % (
        topic.encode("utf-8", "surrogatepass"),
        str(partition).encode(),
        str(offset).encode(),
        hashlib.sha1(original, usedforsecurity=False).digest(),
    )
    return _uuid5(name)


def dead_letter_headers(
    source: str,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    original: bytes,
    rejected_at: str | None,
    customer_id: str | None,
) -> Headers:
    """A dead letter's attributes; ce_time is when it was judged (its `received_at`)."""
    return _headers(
        dead_letter_id(topic, partition, offset, original),
        source,
        TYPE_DEADLETTER,
        rejected_at,
        customer_id,
    )


# ---- structured-mode input -------------------------------------------------------------


def is_structured(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, Any]) -> bool:
    """Does a record's `content-type` header say CloudEvents structured mode?"""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, raw in pairs:
        if raw is not None and key.lower() == "content-type":
            text = raw.decode("latin-1") if isinstance(raw, (bytes, bytearray)) else str(raw)
            # Parameters (`; charset=UTF-8`) and case do not change the media type.
            return text.split(";", 1)[0].strip().lower() == STRUCTURED_CONTENT_TYPE
    return False


def _json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _reject(message: str, data: Any) -> RejectedRecord:
    cid = data.get("customer_id") if type(data) is dict else None
    return RejectedRecord(
        "schema_violation",
        "CloudEvents envelope: " + message,
        cid if isinstance(cid, str) and cid else None,
    )


def event_data(envelope: dict[str, Any]) -> dict[str, Any]:
    """The event a structured-mode envelope carries, or `schema_violation`.

    Only the envelope's shape is checked; its `id` and `time` are transport metadata
    (the event's own `event_id` and `occurred_at` decide, contract section 2.10)."""
    data = envelope.get("data")
    version = envelope.get("specversion")
    if version != SPECVERSION:
        raise _reject(f"specversion {version!r}, only {SPECVERSION!r} is read", data)
    if "data_base64" in envelope:
        raise _reject("data_base64 holds bytes; data must hold the event object", data)
    for attr in ("id", "source", "type"):
        v = envelope.get(attr)
        if not isinstance(v, str) or not v:
            raise _reject(f"{attr} must be a non-empty string", data)
    for attr in ("time", "datacontenttype", "subject", "dataschema"):
        v = envelope.get(attr)
        if v is not None and not isinstance(v, str):
            raise _reject(f"{attr} must be a string", data)
    content_type = envelope.get("datacontenttype")
    if content_type is not None and not _json_media_type(content_type):
        raise _reject(f"datacontenttype {content_type!r} is not JSON", data)
    if type(data) is not dict:
        what = "missing" if "data" not in envelope else "not a JSON object"
        raise _reject(f"data is {what}; it must hold the event object", data)
    return data
