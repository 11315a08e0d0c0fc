"""The profit model's step functions (spec sections 3–5).

`ProfitModel.apply(state, record)` is the Bytewax-style fold step: it updates the
customer's `CustomerState` in place (the caller owns it: a dict entry in replay, a
table value in the service) and returns a `StepResult` with the outcome, the alert
if the status changed in an alerted way, and a record to forward to another
customer (a referral link to the referred customer, a credit to the referrer).

Redelivery is harmless: every applied id is remembered in the state. A duplicate
of an event that forwarded something forwards it again (the receiver is
idempotent), so a crash between the table write and the send loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from alerts.build import build_alert, revenue_change
from alerts.status import StatusRules, alert_kind, decide
from models.events import (
    Event,
    InvoiceEvent,
    OrderEvent,
    ReferralEvent,
    SalesActivityEvent,
    TicketEvent,
)
from models.ledger import (
    COGS,
    COMM,
    FUL,
    OVD,
    PAID,
    REF,
    REV,
    SALES,
    SUP,
    CustomerState,
    Invoice,
    KeptAlert,
    Ticket,
    add,
    add_many,
    advance,
)
from models.money import LEDGER_PLACES, ZERO, exact, money_str
from models.outputs import Alert, Snapshot, figures_wire
from models.settings import Settings
from models.timeutil import US_PER_DAY, day_of, iso, to_us

Outcome = Literal["applied", "duplicate", "stale"]
_SIXTY = Decimal(60)
_DAYS_PER_YEAR = Decimal(365)


@dataclass(frozen=True, slots=True)
class ReferralLink:
    """Tells the referred customer who referred it (first referral wins)."""

    referred_id: str
    referrer_id: str
    occurred_at: int
    event_id: str


@dataclass(frozen=True, slots=True)
class ReferralCredit:
    """A share of a referred customer's order contribution, for the referrer."""

    credit_id: str  # "<order event_id>:referral"
    referrer_id: str
    amount: Decimal
    occurred_at: int


Forward = ReferralLink | ReferralCredit


@dataclass(slots=True)
class StepResult:
    outcome: Outcome
    alert: Alert | None = None
    forward: Forward | None = None


# `seen` values pack the day an id was applied with one flag bit: did applying it
# forward a record? A duplicate then forwards it again, and only then.


def _ticket_is_stale(state: CustomerState, e: TicketEvent, at: int) -> bool:
    t = state.tickets.get(e.ticket_id)
    return t is not None and at < t.at


def _invoice_is_stale(state: CustomerState, e: InvoiceEvent, at: int) -> bool:
    inv = state.invoices.get(e.invoice_id)
    if inv is None:
        return False
    if at < inv.at or inv.status == "paid":
        return True  # earlier than the latest applied event, or final
    return inv.status == "written_off" and e.status != "paid"  # only recovered money counts


class ProfitModel:
    """The rules of one configuration; stateless itself, shared by all customers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.window_days = settings.window_days
        self.currency = settings.reporting_currency
        self.rules = StatusRules.from_settings(settings)
        self._fx = settings.fx_rates
        self._hourly = settings.hourly_rate
        self._bands = [(b.min_days, b.rate) for b in reversed(settings.provision_rate)]
        self._horizon_us = settings.referral_horizon_days * US_PER_DAY
        self._dunning_fee = exact(settings.dunning_fee)
        self._alerts_kept = settings.recent_alerts_kept
        # Dispatch on the event's type: one dict lookup instead of an isinstance chain.
        self._handlers: dict[type, Callable[[CustomerState, Any, int, int], Forward | None]] = {
            OrderEvent: self._apply_order,
            TicketEvent: self._apply_ticket,
            InvoiceEvent: self._apply_invoice,
            SalesActivityEvent: self._apply_sales,
            ReferralEvent: self._apply_referral,
        }
        self._stale_checks: dict[type, Callable[[CustomerState, Any, int], bool]] = {
            TicketEvent: _ticket_is_stale,
            InvoiceEvent: _invoice_is_stale,
        }

    # ---- the fold step -------------------------------------------------------------

    def apply(
        self, state: CustomerState, record: Event | ReferralLink | ReferralCredit
    ) -> StepResult:
        if isinstance(record, ReferralLink):
            return self.apply_link(state, record)
        if isinstance(record, ReferralCredit):
            return self.apply_credit(state, record)
        return self.apply_event(state, record)

    def apply_event(self, state: CustomerState, event: Event, at: int | None = None) -> StepResult:
        """Apply one of the customer's own events; `at` is `occurred_at` in epoch µs
        when the caller already has it (the decoder computes it once)."""
        event_id = event.event_id
        seen = state.seen
        mark = seen.get(event_id)
        if mark is not None:
            again = self._forward_of(state, event) if mark & 1 else None
            return StepResult("duplicate", None, again)
        if at is None:
            at = to_us(event.occurred_at)
        kind = type(event)
        stale = self._stale_checks.get(kind)
        if stale is not None and stale(state, event, at):
            return StepResult("stale")

        # _move_as_of, inlined (as `exact` in _amounts, the net in _evaluate and the
        # clock read in Replayer.feed): written as calls, the replay benchmark ran
        # 113,435 instructions per event; inlined 106-108k (callgrind, 1 % noise from
        # hash seeds).
        day = at // US_PER_DAY
        as_of = state.as_of
        if as_of is None or at > as_of:
            state.as_of = at
            if day != state.day:
                advance(state, day, self.window_days)
        forward = self._handlers[kind](state, event, day, at)

        day_applied = state.day
        seen[event_id] = ((day if day_applied is None else day_applied) << 1) | (
            forward is not None
        )
        state.events_applied += 1
        first = state.first_seen
        if first is None or at < first:
            state.first_seen = at
        last = state.last_event_at
        if last is None or at > last:
            state.last_event_at = at
        return StepResult("applied", self._evaluate(state, event_id), forward)

    def apply_link(self, state: CustomerState, link: ReferralLink) -> StepResult:
        # Not an event of the referred customer: no as_of move, no evaluation.
        if state.referred_by is not None:
            return StepResult("duplicate")
        state.referred_by = link.referrer_id
        state.referral_at = link.occurred_at
        return StepResult("applied")

    def apply_credit(self, state: CustomerState, credit: ReferralCredit) -> StepResult:
        if credit.credit_id in state.seen:
            return StepResult("duplicate")
        self._move_as_of(state, credit.occurred_at)
        add(state, day_of(credit.occurred_at), REF, credit.amount, self.window_days)
        state.seen[credit.credit_id] = (state.day if state.day is not None else 0) << 1
        return StepResult("applied", self._evaluate(state, credit.credit_id))

    def sweep(self, state: CustomerState, as_of: int) -> StepResult:
        """Re-evaluate without an event: old deltas age out of the window."""
        if not state.has_own_events:
            return StepResult("stale")
        self._move_as_of(state, as_of)
        return StepResult("applied", self._evaluate(state, None))

    # ---- section 3: the components -------------------------------------------------

    def _apply_order(
        self, state: CustomerState, e: OrderEvent, day: int, occurred: int
    ) -> ReferralCredit | None:
        r, c, k, f = self._amounts(e)
        if e.kind == "placed":
            add_many(state, day, ((REV, r), (COGS, c), (COMM, k), (FUL, f)), self.window_days)
        else:
            add_many(state, day, ((REV, -r), (COGS, -c), (COMM, -k), (FUL, f)), self.window_days)
        if state.referred_by is None:
            return None
        return self._credit_for(state, e, occurred)

    def _apply_sales(
        self, state: CustomerState, e: SalesActivityEvent, day: int, occurred: int
    ) -> None:
        add(state, day, SALES, exact(e.cost * self._fx[e.currency]), self.window_days)

    def _apply_referral(
        self, state: CustomerState, e: ReferralEvent, day: int, occurred: int
    ) -> ReferralLink:
        state.referred.add(e.referred_customer_id)
        return ReferralLink(e.referred_customer_id, e.customer_id, occurred, e.event_id)

    def _amounts(self, e: OrderEvent) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """Revenue, cost of goods, commission and fulfilment in the reporting currency."""
        rate = self._fx[e.currency]
        # models.money.exact, inlined: four per order.
        if rate == 1:  # the reporting currency: no multiplication to round
            r, c, k, f = e.revenue, e.cost_of_goods, e.commission, e.fulfillment_cost
        else:
            r, c, k, f = (
                e.revenue * rate,
                e.cost_of_goods * rate,
                e.commission * rate,
                e.fulfillment_cost * rate,
            )
        return (
            r.quantize(LEDGER_PLACES, ROUND_HALF_EVEN).normalize(),
            c.quantize(LEDGER_PLACES, ROUND_HALF_EVEN).normalize(),
            k.quantize(LEDGER_PLACES, ROUND_HALF_EVEN).normalize() if k else ZERO,
            f.quantize(LEDGER_PLACES, ROUND_HALF_EVEN).normalize() if f else ZERO,
        )

    def contribution(self, e: OrderEvent) -> Decimal:
        """The order's effect on direct_profit, in the reporting currency."""
        r, c, k, f = self._amounts(e)
        return (r - c - k - f) if e.kind == "placed" else (-r + c + k - f)

    def _credit_for(
        self, state: CustomerState, e: OrderEvent, occurred: int
    ) -> ReferralCredit | None:
        referrer, since = state.referred_by, state.referral_at
        if referrer is None or since is None or not since <= occurred < since + self._horizon_us:
            return None
        amount = exact(self.settings.referral_share * self.contribution(e))
        return ReferralCredit(f"{e.event_id}:referral", referrer, amount, occurred)

    def _forward_of(self, state: CustomerState, event: Event) -> Forward | None:
        if isinstance(event, OrderEvent):
            return self._credit_for(state, event, to_us(event.occurred_at))
        if isinstance(event, ReferralEvent):
            return ReferralLink(
                event.referred_customer_id,
                event.customer_id,
                to_us(event.occurred_at),
                event.event_id,
            )
        return None

    def ticket_cost(self, e: TicketEvent) -> Decimal:
        cost = e.handling_minutes / _SIXTY * self._hourly[e.channel]
        if e.escalated:
            cost += self.settings.escalation_cost
        if e.channel == "onsite":
            cost += self.settings.onsite_visit_cost
        return exact(cost)

    def _apply_ticket(self, state: CustomerState, e: TicketEvent, day: int, occurred: int) -> None:
        new = self.ticket_cost(e)
        old = state.tickets.get(e.ticket_id)
        add(state, day, SUP, new - (old.cost if old else ZERO), self.window_days)
        state.tickets[e.ticket_id] = Ticket(new, occurred)

    def provision_rate(self, days_overdue: int) -> Decimal:
        for min_days, rate in self._bands:
            if days_overdue >= min_days:
                return rate
        return ZERO

    def _apply_invoice(
        self, state: CustomerState, e: InvoiceEvent, day: int, occurred: int
    ) -> None:
        s = self.settings
        amount = exact(e.amount_due * self._fx[e.currency])
        days = e.days_overdue
        old = state.invoices.get(e.invoice_id)
        if e.status == "overdue":
            provision = exact(amount * self.provision_rate(days))
        elif e.status == "paid":
            provision = ZERO
        else:  # written_off
            provision = amount
        if days >= 1:
            carrying = exact(amount * s.cost_of_capital_annual * days / _DAYS_PER_YEAR)
        else:
            carrying = old.carrying if old else ZERO
        delta = provision + carrying - ((old.provision + old.carrying) if old else ZERO)
        if e.status == "overdue":
            delta += self._dunning_fee
        add(state, day, OVD, delta, self.window_days)
        # A paid invoice is final (every later event is stale): only its status is kept.
        state.invoices[e.invoice_id] = (
            PAID if e.status == "paid" else Invoice(e.status, amount, provision, carrying, occurred)
        )

    # ---- sections 4–5: as_of, evaluation, status -----------------------------------

    def _move_as_of(self, state: CustomerState, at: int) -> None:
        if state.as_of is None or at > state.as_of:
            state.as_of = at
            day = at // US_PER_DAY
            if day != state.day:
                advance(state, day, self.window_days)

    def _evaluate(self, state: CustomerState, trigger: str | None) -> Alert | None:
        if state.first_seen is None or state.as_of is None:
            return None  # credits only, no event of its own yet: nothing to judge
        previous = state.status
        t = state.trailing
        rev, cogs, comm, ful, sup, sales, ovd, ref = t
        net = rev - cogs - comm - ful - sup - sales - ovd + ref
        status, state.below_since = decide(
            previous, state.below_since, state.as_of, state.first_seen, net, rev, self.rules
        )
        if status == previous:
            return None
        state.status = status
        kind = alert_kind(previous, status)
        if kind is None:
            return None
        state.alerts_emitted += 1
        # The alert is built from what is kept of it, so the one sent and the one
        # rebuilt later (GET …/alerts, a redelivered trigger) cannot differ.
        kept = KeptAlert(
            state.alerts_emitted,
            kind,
            previous,
            status,
            state.as_of,
            trigger,
            tuple(t),
            tuple(state.lifetime),
            state.prev_revenue,
        )
        if self._alerts_kept:
            state.recent_alerts.append(kept)
            del state.recent_alerts[: -self._alerts_kept]
        return self.kept_alert(state, kept)

    def kept_alert(self, state: CustomerState, k: KeptAlert) -> Alert:
        """A kept alert rebuilt exactly as it was sent."""
        return build_alert(
            customer_id=state.customer_id,
            n=k.n,
            kind=k.kind,  # type: ignore[arg-type]
            status=k.status,
            previous_status=k.previous_status,
            as_of=iso(k.as_of) or "",
            trigger_event_id=k.trigger,
            window_days=self.window_days,
            trailing=list(k.trailing),
            lifetime=list(k.lifetime),
            previous_revenue=k.prev_revenue,
            currency=self.currency,
        )

    def recent_alerts_wire(self, state: CustomerState) -> list[dict[str, Any]]:
        """The kept alerts as sent, oldest first."""
        return [self.kept_alert(state, k).to_wire() for k in state.recent_alerts]

    # ---- section 6: the snapshot ---------------------------------------------------

    def snapshot_wire(self, state: CustomerState) -> dict[str, Any]:
        """The snapshot as its JSON value, built without validation: the service
        sends one per applied record, so this is on the hot path. `snapshot()`
        is the same, validated against the `Snapshot` model."""
        open_count, open_amount, open_provision = 0, ZERO, ZERO
        for inv in state.invoices.values():
            if inv.status == "overdue":
                open_count += 1
                open_amount += inv.amount_due
                open_provision += inv.provision
        return {
            "customer_id": state.customer_id,
            "status": state.status,
            "as_of": iso(state.as_of) or "",
            "window_days": self.window_days,
            "trailing": figures_wire(state.trailing),
            "lifetime": figures_wire(state.lifetime),
            "revenue_change": revenue_change(state.trailing[REV], state.prev_revenue),
            "open_invoices": {
                "count": open_count,
                "amount_due": money_str(open_amount),
                "provision": money_str(open_provision),
            },
            "referrals": {
                "referred_customers": len(state.referred),
                "referred_by": state.referred_by,
            },
            "first_seen": iso(state.first_seen) or "",
            "last_event_at": iso(state.last_event_at) or "",
            "events_applied": state.events_applied,
        }

    def snapshot(self, state: CustomerState) -> Snapshot:
        return Snapshot.model_validate(self.snapshot_wire(state))
