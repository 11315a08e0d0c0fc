"""Small builders for input records, so a test reads like the spec's tables."""

from __future__ import annotations

from itertools import count
from typing import Any

from models.replay import OutputRecord, Replayer
from models.settings import Settings

_ids = count(1)


def _base(cid: str, at: str, event_id: str | None) -> dict[str, Any]:
    return {
        "event_id": event_id or f"e{next(_ids)}",
        "customer_id": cid,
        "occurred_at": at if "T" in at else f"{at}T10:00:00Z",
    }


def order(
    cid: str,
    at: str,
    revenue: Any,
    cogs: Any,
    *,
    commission: Any = 0,
    fulfillment: Any = 0,
    kind: str = "placed",
    currency: str = "EUR",
    order_id: str = "o",
    event_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    v = _base(cid, at, event_id) | {
        "currency": currency,
        "order_id": order_id,
        "kind": kind,
        "revenue": revenue,
        "cost_of_goods": cogs,
        "commission": commission,
        "fulfillment_cost": fulfillment,
    }
    return "orders", v


def ticket(
    cid: str,
    at: str,
    ticket_id: str,
    channel: str,
    minutes: Any,
    *,
    escalated: bool = False,
    event_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    v = _base(cid, at, event_id) | {
        "ticket_id": ticket_id,
        "channel": channel,
        "handling_minutes": minutes,
        "escalated": escalated,
    }
    return "support-tickets", v


def invoice(
    cid: str,
    at: str,
    invoice_id: str,
    amount: Any,
    due: str,
    *,
    status: str = "overdue",
    currency: str = "EUR",
    event_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    v = _base(cid, at, event_id) | {
        "currency": currency,
        "invoice_id": invoice_id,
        "status": status,
        "amount_due": amount,
        "due_date": due,
    }
    return "invoice-overdue", v


def referral(
    cid: str, at: str, referred: str, *, event_id: str | None = None
) -> tuple[str, dict[str, Any]]:
    return "referrals", _base(cid, at, event_id) | {"referred_customer_id": referred}


def sales(
    cid: str,
    at: str,
    cost: Any,
    *,
    kind: str = "call",
    currency: str = "EUR",
    event_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    v = _base(cid, at, event_id) | {
        "currency": currency,
        "activity_id": f"a{next(_ids)}",
        "kind": kind,
        "cost": cost,
    }
    return "sales-activities", v


def run(
    records: list[tuple[str, Any]], settings: Settings | None = None
) -> tuple[Replayer, list[OutputRecord]]:
    """Feed records in order; return the replayer and every output it produced."""
    r = Replayer(settings or Settings())
    out: list[OutputRecord] = []
    for offset, (topic, value) in enumerate(records):
        out.extend(r.feed(topic, value, offset=offset))
    return r, out


def alerts(outputs: list[OutputRecord]) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.topic == "profitability-alerts"]


def dlq_codes(outputs: list[OutputRecord]) -> list[str]:
    return [o.value["error"]["code"] for o in outputs if o.topic == "profitability-dlq"]
