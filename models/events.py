"""The five input event contracts (spec section 2), as pydantic v2 models.

Unknown fields are ignored; timestamps must carry an offset (and lie within
datetime's range in UTC); money is `Decimal`, finite, non-negative and below
`MAX_AMOUNT`, given as a JSON number or a decimal string.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _timestamp_text(v: Any) -> Any:
    # pydantic would take a Unix number as a datetime; the contract says RFC 3339 text.
    if not isinstance(v, str):
        raise ValueError("must be an RFC 3339 timestamp string with an offset")
    return v


def _utc_in_range(v: datetime) -> datetime:
    # The engine works in UTC: an offset that takes the instant out of datetime's range
    # (0001-01-01T00:00:00+01:00) would raise OverflowError inside the engine.
    try:
        v.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range in UTC") from None
    return v


def _date_text(v: Any) -> Any:
    if not isinstance(v, str) or not _DATE_RE.match(v):
        raise ValueError("must be a date string YYYY-MM-DD")
    return v


# Amounts (and minutes) below 10^15: then everything the engine derives from one
# (converted, times rates and days overdue) fits 10 decimal places in Decimal's 28
# digits; 1e308 or a 40-digit amount raised decimal.InvalidOperation mid-record.
MAX_AMOUNT = Decimal(10) ** 15

Id = Annotated[str, Field(min_length=1, max_length=128)]
Money = Annotated[Decimal, Field(ge=0, lt=MAX_AMOUNT, allow_inf_nan=False)]
Timestamp = Annotated[
    AwareDatetime, BeforeValidator(_timestamp_text), AfterValidator(_utc_in_range)
]
IsoDate = Annotated[date, BeforeValidator(_date_text)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    customer_id: Id
    occurred_at: Timestamp


class OrderEvent(_Event):
    """`orders`: a placed order, or a return of (part of) one."""

    currency: Currency
    order_id: Id
    kind: Literal["placed", "returned"] = "placed"
    revenue: Money = Field(description="net of discounts")
    cost_of_goods: Money
    commission: Money = Field(default=Decimal(0), description="on a return: clawed back")
    fulfillment_cost: Money = Field(default=Decimal(0), description="extra handling / returns")


class InvoiceEvent(_Event):
    """`invoice-overdue`: an invoice's latest dunning state."""

    currency: Currency
    invoice_id: Id
    status: Literal["overdue", "paid", "written_off"] = "overdue"
    amount_due: Annotated[Decimal, Field(gt=0, lt=MAX_AMOUNT, allow_inf_nan=False)]
    due_date: IsoDate

    @property
    def days_overdue(self) -> int:
        return (self.occurred_at.astimezone(UTC).date() - self.due_date).days


class TicketEvent(_Event):
    """`support-tickets`: `handling_minutes` is cumulative for the ticket so far."""

    ticket_id: Id
    channel: Literal["phone", "email", "chat", "onsite", "self_service"]
    handling_minutes: Annotated[Decimal, Field(ge=0, lt=MAX_AMOUNT, allow_inf_nan=False)]
    escalated: Annotated[bool, Field(strict=True)] = False
    category: Literal["complaint", "question", "incident", "request"] = "question"


class ReferralEvent(_Event):
    """`referrals`: `customer_id` referred `referred_customer_id`."""

    referred_customer_id: Id


class SalesActivityEvent(_Event):
    """`sales-activities`: the fully loaded cost of a piece of sales effort."""

    currency: Currency
    activity_id: Id
    kind: Literal["call", "visit", "demo", "proposal", "account_review", "other"] = "other"
    cost: Money


Event = OrderEvent | InvoiceEvent | TicketEvent | ReferralEvent | SalesActivityEvent

EVENT_MODELS: dict[str, type[_Event]] = {
    "order": OrderEvent,
    "invoice": InvoiceEvent,
    "ticket": TicketEvent,
    "referral": ReferralEvent,
    "sales_activity": SalesActivityEvent,
}

__all__ = [
    "EVENT_MODELS",
    "Event",
    "InvoiceEvent",
    "OrderEvent",
    "ReferralEvent",
    "SalesActivityEvent",
    "TicketEvent",
]
