"""Output records (spec sections 6 and 7): snapshot, alert, dead letter.

Money is a 2-place decimal string, timestamps are RFC 3339 UTC strings; both are
formatted where the record is built (`models.money`, `models.timeutil`), so these
models only check the shape and give consumers a JSON Schema.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.errors import RejectionCode
from models.ledger import COMPONENTS, direct_profit, net_profit
from models.money import money_str

MoneyStr = Annotated[str, Field(pattern=r"^-?\d+\.\d{2}$", examples=["1234.50"])]
StatusName = Literal["new", "profitable", "at_risk", "unprofitable"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Figures(_Out):
    revenue: MoneyStr
    cost_of_goods: MoneyStr
    commissions: MoneyStr
    fulfillment: MoneyStr
    support: MoneyStr
    sales: MoneyStr
    overdue: MoneyStr
    referral_value: MoneyStr
    direct_profit: MoneyStr
    net_profit: MoneyStr

    @classmethod
    def of(cls, v: list[Decimal]) -> Figures:
        return cls(**figures_wire(v))


def figures_wire(v: list[Decimal]) -> dict[str, str]:
    values = {name: money_str(v[i]) for i, name in enumerate(COMPONENTS)}
    values["direct_profit"] = money_str(direct_profit(v))
    values["net_profit"] = money_str(net_profit(v))
    return values


class OpenInvoices(_Out):
    count: int = Field(ge=0)
    amount_due: MoneyStr
    provision: MoneyStr


class Referrals(_Out):
    referred_customers: int = Field(ge=0)
    referred_by: str | None


class Snapshot(_Out):
    customer_id: str
    status: StatusName
    as_of: str
    window_days: int
    trailing: Figures
    lifetime: Figures
    revenue_change: float | None
    open_invoices: OpenInvoices
    referrals: Referrals
    first_seen: str
    last_event_at: str
    events_applied: int


class Driver(_Out):
    component: Literal["cost_of_goods", "commissions", "fulfillment", "support", "sales", "overdue"]
    amount: MoneyStr
    share: float


class Alert(_Out):
    alert_id: str
    customer_id: str
    kind: Literal["became_unprofitable", "at_risk", "recovered"]
    severity: Literal["critical", "warning", "info"]
    status: StatusName
    previous_status: StatusName
    as_of: str
    trigger_event_id: str | None
    window_days: int
    trailing: Figures
    lifetime: Figures
    revenue_change: float | None
    drivers: list[Driver]
    referral_value_at_stake: MoneyStr
    summary: str


class DeadLetterError(_Out):
    code: RejectionCode
    message: str
    topic: str
    partition: int | None
    offset: int | None


class DeadLetter(_Out):
    error: DeadLetterError
    original: str
    original_encoding: Literal["base64"] | None = None
    # The original's size in bytes, only when `original` holds just its first bytes
    # (models.deadletter.MAX_ORIGINAL_BYTES).
    original_size: int | None = None
    received_at: str

    def to_wire(self) -> dict[str, Any]:
        # `original_encoding` appears only when the original was not UTF-8 text (or was
        # cut), `original_size` only when it was cut.
        absent = {k for k in ("original_encoding", "original_size") if getattr(self, k) is None}
        return self.model_dump(mode="json", exclude_none=False, exclude=absent)
