"""Raw input record -> validated event, or a `RejectedRecord` with its DLQ code.

Every check here is stateless, so the service can run it before touching a table.
Numbers are parsed straight into `Decimal` (jiter's decimal mode): a money value
never passes through a binary float.
"""

from __future__ import annotations

from typing import Any, Final

import jiter
from pydantic import ValidationError

from models.cloudevents import STRUCTURED_CONTENT_TYPE, event_data
from models.errors import RejectedRecord
from models.events import EVENT_MODELS, Event, InvoiceEvent, ReferralEvent
from models.settings import Settings
from models.timeutil import to_us

# jiter caches the Python strings it creates ("all" by default): a win for repeated
# values, a loss for records whose values are mostly unique ids and timestamps. Keys
# only: parsing a replay line took ~1.6 µs instead of ~2.3-3.5 µs along a stream.
JSON_CACHE: Final = "keys"


def parse_json(raw: bytes | str) -> Any:
    """JSON text -> Python, numbers with a fraction or exponent as `Decimal`."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    try:
        # NaN and Infinity are not JSON (RFC 8259); jiter accepts them unless told.
        return jiter.from_json(
            raw, float_mode="decimal", cache_mode=JSON_CACHE, allow_inf_nan=False
        )
    except ValueError as exc:  # jiter reports syntax and UTF-8 errors as ValueError
        raise RejectedRecord("malformed_json", f"not valid JSON: {exc}") from None


def _schema_message(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        path = ".".join(str(p) for p in err["loc"])
        loc = prefix + path if path else prefix.rstrip(".") or "value"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _customer_of(value: dict[str, Any]) -> str | None:
    """The customer a rejected value names, if it names one (for the DLQ record's key)."""
    cid = value.get("customer_id")
    return cid if isinstance(cid, str) and cid else None


class Decoder:
    """Decodes records of the configured input topics; one per Settings."""

    def __init__(self, settings: Settings) -> None:
        self._kinds = settings.topics.input_kinds()
        # pydantic's validator directly: `Model.model_validate` adds ~3 µs of Python
        # around the same call, which is a tenth of an event's budget.
        self._validators = {
            topic: EVENT_MODELS[kind].__pydantic_validator__ for topic, kind in self._kinds.items()
        }
        self._fx = settings.fx_rates
        self._max_bytes = settings.max_payload_bytes
        self._skew_us = settings.max_future_skew_seconds * 1_000_000

    def decode(
        self,
        topic: str,
        raw: Any,
        *,
        now_us: int,
        size: int | None = None,
        structured: bool = False,
    ) -> Event:
        """`raw` is the record value: bytes or text as on the wire, or an already
        parsed JSON object (replay). `size` is the wire size when `raw` is parsed.

        A value with `specversion` is a CloudEvents structured-mode envelope and its
        `data` is decoded (models/cloudevents.py); `structured` (the record's
        content-type said so) makes any other value a `schema_violation`."""
        return self.decode_at(topic, raw, now_us=now_us, size=size, structured=structured)[0]

    def decode_at(
        self,
        topic: str,
        raw: Any,
        *,
        now_us: int,
        size: int | None = None,
        structured: bool = False,
    ) -> tuple[Event, int]:
        """Like `decode`, also giving `occurred_at` as epoch µs (computed once here)."""
        if type(raw) is not dict:  # replay hands over parsed values: no bytes to check
            if isinstance(raw, (bytes, bytearray, memoryview)):
                raw = bytes(raw)
                size = len(raw)
            elif isinstance(raw, str):
                size = len(raw.encode("utf-8", "surrogatepass"))
        if size is not None and size > self._max_bytes:
            raise RejectedRecord(
                "payload_too_large", f"value is {size} bytes, the limit is {self._max_bytes}"
            )
        value = parse_json(raw) if isinstance(raw, (bytes, str)) else raw
        if not isinstance(value, dict):
            raise RejectedRecord("schema_violation", "value must be a JSON object")
        # By the value: the decoder sees no headers (replay has none), and no event
        # has a `specversion` field. One dict lookup for a plain event.
        envelope = "specversion" in value
        if envelope:
            value = event_data(value)
        elif structured:
            raise RejectedRecord(
                "schema_violation",
                f"content-type {STRUCTURED_CONTENT_TYPE}, but the value is no CloudEvents "
                "envelope (no specversion)",
                _customer_of(value),
            )
        validator = self._validators.get(topic)
        if validator is None:
            raise RejectedRecord(
                "schema_violation", f"unknown input topic {topic!r}", _customer_of(value)
            )
        try:
            event: Event = validator.validate_python(value)
        except ValidationError as exc:
            raise RejectedRecord(
                "schema_violation",
                _schema_message(exc, "data." if envelope else ""),
                _customer_of(value),
            ) from None

        customer_id = event.customer_id
        at = to_us(event.occurred_at)
        if at > now_us + self._skew_us:
            raise RejectedRecord(
                "future_timestamp",
                f"occurred_at {event.occurred_at.isoformat()} is ahead of the clock",
                customer_id,
            )
        # __dict__, not getattr: a missing attribute costs pydantic an exception.
        currency = event.__dict__.get("currency")
        if currency is not None and currency not in self._fx:
            raise RejectedRecord(
                "unknown_currency", f"currency {currency} is not in the FX table", customer_id
            )
        if isinstance(event, ReferralEvent) and event.referred_customer_id == customer_id:
            raise RejectedRecord("self_referral", "a customer cannot refer itself", customer_id)
        if isinstance(event, InvoiceEvent) and event.status == "overdue":
            days = event.days_overdue
            if days < 1:
                raise RejectedRecord(
                    "not_overdue",
                    f"invoice {event.invoice_id} is {days} days past due at occurred_at",
                    customer_id,
                )
        return event, at
