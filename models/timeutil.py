"""Time as integers: the ledger keeps instants as microseconds since the Unix epoch
(UTC) and days as days since the epoch, which keeps the state small and exact and
makes window arithmetic integer arithmetic."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_DAY = 86_400_000_000
_ONE_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    """An aware datetime as epoch microseconds."""
    return (dt - EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def day_of(us: int) -> int:
    """The UTC day (days since the epoch) an instant falls on."""
    return us // US_PER_DAY


def iso(us: int | None) -> str | None:
    """RFC 3339 UTC, as the outputs carry it (`2026-04-20T10:00:00+00:00`)."""
    return None if us is None else from_us(us).isoformat()


def now_us() -> int:
    return time.time_ns() // 1000
