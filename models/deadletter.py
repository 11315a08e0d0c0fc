"""Dead-letter records (spec section 7): what was rejected, why, and where from."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from models.cloudevents import dead_letter_headers
from models.errors import RejectedRecord
from models.outputs import DeadLetter, DeadLetterError

# A dead letter must fit in one producer request (max_request_size, 1 MiB by default,
# about the broker's message.max.bytes): in JSON a control character takes 6 bytes, so
# a rejected value of a few hundred KB, which the broker had accepted, made a dead
# letter the producer refused; the commit failed and the partition stalled, again after
# every restart. An `original` longer than this as JSON is written in base64 (at most
# 4/3 of its bytes), and when that is still longer, only its first bytes are.
MAX_ORIGINAL_BYTES = 512 * 1024

# Kafka Streams' dead-letter header names (KIP-1034).
HEADER_CODE = "__streams.errors.exception"
HEADER_MESSAGE = "__streams.errors.message"
HEADER_TOPIC = "__streams.errors.topic"
HEADER_PARTITION = "__streams.errors.partition"
HEADER_OFFSET = "__streams.errors.offset"


def dump_json(value: Any) -> str:
    """Compact JSON that writes `Decimal` as the number it was parsed from."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{dump_json(str(k))}:{dump_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dump_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    import json

    return json.dumps(value, ensure_ascii=False)


def dead_letter(
    rejection: RejectedRecord,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    original: Any,
    received_at: str,
) -> DeadLetter:
    encoding = None
    raw: bytes | None = None
    if isinstance(original, (bytes, bytearray, memoryview)):
        raw = bytes(original)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    elif isinstance(original, str):
        text = original
    else:
        text = dump_json(original)
    size = None
    # 6 bytes a character at most (\u0000): only a long original is measured.
    if len(text) * 6 + 2 > MAX_ORIGINAL_BYTES and original_json_size(text) > MAX_ORIGINAL_BYTES:
        data = raw if raw is not None else text.encode("utf-8", "surrogatepass")
        keep = (MAX_ORIGINAL_BYTES - 2) // 4 * 3  # base64: 4 characters per 3 bytes
        if len(data) > keep:
            size, data = len(data), data[:keep]
        text, encoding = base64.b64encode(data).decode("ascii"), "base64"
    return DeadLetter(
        error=DeadLetterError(
            code=rejection.code,
            message=rejection.message,
            topic=topic,
            partition=partition,
            offset=offset,
        ),
        original=text,
        original_encoding=encoding,
        original_size=size,
        received_at=received_at,
    )


def original_json_size(text: str) -> int:
    """Bytes of `text` as a JSON string in a dead letter (compact UTF-8 JSON)."""
    import json

    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def kip1034_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    e = letter.error
    return [
        (HEADER_CODE, e.code.encode()),
        (HEADER_MESSAGE, e.message.encode()),
        (HEADER_TOPIC, e.topic.encode()),
        (HEADER_PARTITION, str(-1 if e.partition is None else e.partition).encode()),
        (HEADER_OFFSET, str(-1 if e.offset is None else e.offset).encode()),
    ]


def record_headers(
    letter: DeadLetter, *, source: str, original: bytes, customer_id: str | None
) -> list[tuple[str, bytes]]:
    """Every header of a DLQ record: KIP-1034's, then CloudEvents' binary mode (contract
    section 2.10). `original` is the rejected value's bytes (its ce_id is stable per
    source record), `source` the service's ce_source."""
    e = letter.error
    return kip1034_headers(letter) + dead_letter_headers(
        source,
        topic=e.topic,
        partition=e.partition,
        offset=e.offset,
        original=original,
        rejected_at=letter.received_at,
        customer_id=customer_id,
    )
