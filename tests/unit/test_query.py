"""The query API's listing rules (models/query.py): filters, sort keys, cursors, merge."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from models import query
from models.errors import QueryError


def row(
    cid: str, status: str, net: str, revenue: str = "0.00", change: float | None = None
) -> dict[str, Any]:
    return {
        "customer_id": cid,
        "status": status,
        "as_of": "2026-01-01T00:00:00+00:00",
        "net_profit": net,
        "revenue": revenue,
        "revenue_change": change,
        "lifetime_net_profit": net,
        "last_event_at": "2026-01-01T00:00:00+00:00",
        "events_applied": 1,
    }


ROWS = [
    row("c-1", "profitable", "100.00", "500.00", 0.5),
    row("c-2", "unprofitable", "-300.00", "10.00", -0.9),
    row("c-3", "at_risk", "-20.00", "40.00", None),
    row("c-4", "unprofitable", "-300.00", "0.00", -1.0),
    row("c-5", "new", "5.00", "5.00", None),
    row("c-10", "profitable", "1000.00", "2000.00", 0.1),
]


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["customer_id"] for r in rows]


def q(**params: str) -> query.ListQuery:
    return query.parse_list_query(params)


def test_default_sort_is_worst_net_profit_first_ties_by_id() -> None:
    chosen, more = query.page(ROWS, q())
    assert ids(chosen) == ["c-2", "c-4", "c-3", "c-5", "c-1", "c-10"]
    assert not more


def test_numbers_sort_as_numbers_not_strings() -> None:
    chosen, _ = query.page(ROWS, q(sort="-net_profit"))
    assert ids(chosen)[:2] == ["c-10", "c-1"]  # "1000.00" > "100.00" > "5.00"


def test_nulls_last_in_both_directions() -> None:
    assert ids(query.page(ROWS, q(sort="revenue_change"))[0])[-2:] == ["c-3", "c-5"]
    assert ids(query.page(ROWS, q(sort="-revenue_change"))[0])[-2:] == ["c-3", "c-5"]


def test_customer_id_descending() -> None:
    rows = [row(c, "new", "0") for c in ("ab", "abc", "b", "a")]
    assert ids(query.page(rows, q(sort="-customer_id"))[0]) == ["b", "abc", "ab", "a"]
    assert ids(query.page(rows, q(sort="customer_id"))[0]) == ["a", "ab", "abc", "b"]


def test_status_filter_counts_and_total() -> None:
    body = query.list_body(ROWS, q(status="unprofitable,at_risk"))
    assert ids(body["customers"]) == ["c-2", "c-4", "c-3"]
    assert body["counts"] == {"new": 1, "profitable": 2, "at_risk": 1, "unprofitable": 2}
    assert body["total"] == 3


@pytest.mark.parametrize("sort", [f"{d}{f}" for f in query.SORT_FIELDS for d in ("", "-")])
def test_paging_over_split_workers_visits_every_customer_once_in_order(sort: str) -> None:
    rng = random.Random(sort)
    statuses = query.STATUSES
    rows = [
        row(
            f"c-{i:03d}",
            rng.choice(statuses),
            str(Decimal(rng.randint(-50, 50)) / 4),
            str(Decimal(rng.randint(0, 30))),
            rng.choice([None, rng.random() - 0.5]),
        )
        for i in range(97)
    ]
    workers = [rows[i::3] for i in range(3)]  # spread over three workers
    everything, _ = query.page(rows, q(sort=sort, limit="500"))
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        params = {"sort": sort, "limit": "7"} | ({"cursor": cursor} if cursor else {})
        query_ = query.parse_list_query(params)
        merged = query.merge_list_bodies([query.list_body(w, query_) for w in workers], query_)
        assert merged["total"] == len(rows)
        seen += ids(merged["customers"])
        cursor = merged["next_cursor"]
        if cursor is None:
            break
    assert seen == ids(everything)


def test_cursor_of_another_sort_is_refused() -> None:
    first = query.merge_list_bodies([query.list_body(ROWS, q(limit="2"))], q(limit="2"))
    assert first["next_cursor"]
    with pytest.raises(QueryError, match="sort=net_profit"):
        q(sort="revenue", cursor=first["next_cursor"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "rich"}, "status must be"),
        ({"status": ","}, "status must be"),
        ({"sort": "price"}, "sort must be"),
        ({"sort": "--net_profit"}, "sort must be"),
        ({"limit": "0"}, "limit must be"),
        ({"limit": "501"}, "limit must be"),
        ({"limit": "ten"}, "limit must be"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),  # base64 of "[]"
        ({"colour": "red"}, "unknown query parameter"),
    ],
)
def test_bad_parameters_say_what_is_wrong(params: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=message) as err:
        query.parse_list_query(params)
    assert err.value.status == 400


def test_newest_alerts_first() -> None:
    alerts = [
        {"alert_id": "a", "as_of": "2026-01-02T00:00:00+00:00"},
        {"alert_id": "b", "as_of": "2026-03-01T00:00:00+00:00"},
        {"alert_id": "c", "as_of": "2026-02-01T00:00:00+00:00"},
    ]
    assert [a["alert_id"] for a in query.newest_alerts(alerts, 2)] == ["b", "c"]
