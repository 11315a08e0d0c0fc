"""The query API's listing rules, without a web server: rows, filters, sort keys,
cursors, and the merge of several workers' pages.

`GET /customers` asks every worker for its own page (the customers of its partitions,
filtered, sorted, after the cursor, at most `limit + 1`) and merges them here: the
same function sorts one worker's rows and the merged rows, so a page never depends
on how the customers happen to be spread over workers.

Cursors are keyset cursors: the sort key of the last row returned. A customer that
changes between two requests may move across the cursor (it can then appear twice
or not at all while paging), but paging never skips or repeats the others.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from models.errors import QueryError

STATUSES: tuple[str, ...] = ("new", "profitable", "at_risk", "unprofitable")
# sort field -> how to read it from a row; every key ends with the customer id, so
# keys are unique and the order is total.
SORT_FIELDS: tuple[str, ...] = (
    "net_profit",
    "revenue",
    "revenue_change",
    "lifetime_net_profit",
    "customer_id",
)
DEFAULT_SORT = "net_profit"  # worst first: what an account manager looks at
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DEFAULT_ALERTS = 20
MAX_ALERTS = 200

Row = dict[str, Any]
SortKey = tuple[Any, ...]


def row_of(snapshot: Mapping[str, Any]) -> Row:
    """One customer in a list: the snapshot's headline figures."""
    return {
        "customer_id": snapshot["customer_id"],
        "status": snapshot["status"],
        "as_of": snapshot["as_of"],
        "net_profit": snapshot["trailing"]["net_profit"],
        "revenue": snapshot["trailing"]["revenue"],
        "revenue_change": snapshot["revenue_change"],
        "lifetime_net_profit": snapshot["lifetime"]["net_profit"],
        "last_event_at": snapshot["last_event_at"],
        "events_applied": snapshot["events_applied"],
    }


@dataclass(frozen=True, slots=True)
class ListQuery:
    statuses: frozenset[str] | None  # None: every status
    sort: str  # a SORT_FIELDS name, "-" prefixed for descending
    limit: int
    after: SortKey | None  # from the cursor

    @property
    def field(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    def key(self, row: Row) -> SortKey:
        """Ascending key of `row` under this sort: nulls last in both directions."""
        cid = row["customer_id"]
        if self.field == "customer_id":
            return (_desc_text(cid),) if self.descending else (cid,)
        value = row[self.field]
        if value is None:
            return (1, 0, cid)
        number = Decimal(str(value))
        return (0, -number if self.descending else number, cid)

    def wanted(self, row: Row) -> bool:
        if self.statuses is not None and row["status"] not in self.statuses:
            return False
        return self.after is None or self.key(row) > self.after

    def params(self, cursor: str | None = None) -> dict[str, str]:
        """The query string that asks the same question (for the other workers)."""
        out = {"sort": self.sort, "limit": str(self.limit)}
        if self.statuses is not None:
            out["status"] = ",".join(s for s in STATUSES if s in self.statuses)
        if cursor:
            out["cursor"] = cursor
        return out


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """`status`, `sort`, `limit`, `cursor` from a query string; QueryError if bad."""
    unknown = set(params) - {"status", "sort", "limit", "cursor", "access_token"}
    if unknown:
        raise QueryError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    statuses: frozenset[str] | None = None
    if params.get("status"):
        wanted = {s.strip() for s in params["status"].split(",") if s.strip()}
        bad = wanted - set(STATUSES)
        if bad or not wanted:
            raise QueryError(
                f"status must be one or more of {', '.join(STATUSES)} (comma-separated), "
                f"got {params['status']!r}"
            )
        statuses = frozenset(wanted)
    sort = params.get("sort") or DEFAULT_SORT
    if sort.lstrip("-") not in SORT_FIELDS or sort.count("-") > 1:
        raise QueryError(
            f"sort must be one of {', '.join(SORT_FIELDS)}, optionally prefixed with '-' "
            f"for descending; got {sort!r}"
        )
    limit = parse_limit(params.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)
    query = ListQuery(statuses, sort, limit, None)
    cursor = params.get("cursor")
    if cursor:
        return ListQuery(statuses, sort, limit, decode_cursor(cursor, sort))
    return query


def parse_limit(text: str | None, default: int, maximum: int) -> int:
    if text is None or text == "":
        return default
    try:
        n = int(text)
    except ValueError:
        raise QueryError(f"limit must be an integer from 1 to {maximum}, got {text!r}") from None
    if not 1 <= n <= maximum:
        raise QueryError(f"limit must be an integer from 1 to {maximum}, got {n}")
    return n


def encode_cursor(sort: str, key: SortKey) -> str:
    raw = json.dumps([sort, [_plain(x) for x in key]], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, sort: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, parts = json.loads(raw)
        if cursor_sort != sort:
            raise QueryError(
                f"this cursor belongs to sort={cursor_sort}; ask again without a cursor"
            )
        key = _key_from_json(sort.lstrip("-"), parts)
    except QueryError:
        raise
    except (binascii.Error, ValueError, TypeError, InvalidOperation, UnicodeDecodeError):
        raise QueryError("cursor is not one this service returned") from None
    return key


def page(rows: Iterable[Row], query: ListQuery) -> tuple[list[Row], bool]:
    """The first `limit` wanted rows in sort order, and whether more follow."""
    chosen = heapq.nsmallest(query.limit + 1, (r for r in rows if query.wanted(r)), key=query.key)
    return chosen[: query.limit], len(chosen) > query.limit


def list_body(rows: Iterable[Row], query: ListQuery) -> dict[str, Any]:
    """One worker's answer: its page, whether it has more, and its counts."""
    all_rows = list(rows)
    counts = dict.fromkeys(STATUSES, 0)
    for r in all_rows:
        counts[r["status"]] += 1
    chosen, more = page(all_rows, query)
    total = sum(n for s, n in counts.items() if query.statuses is None or s in query.statuses)
    return {"customers": chosen, "more": more, "counts": counts, "total": total}


def merge_list_bodies(bodies: Iterable[Mapping[str, Any]], query: ListQuery) -> dict[str, Any]:
    """The API's answer from every worker's `list_body`."""
    rows: list[Row] = []
    counts = dict.fromkeys(STATUSES, 0)
    total = 0
    more = False
    for body in bodies:
        rows += body["customers"]
        more = more or bool(body["more"])
        total += body["total"]
        for status, n in body["counts"].items():
            counts[status] += n
    chosen, more_here = page(rows, query)
    next_cursor = (
        encode_cursor(query.sort, query.key(chosen[-1])) if chosen and (more or more_here) else None
    )
    return {"customers": chosen, "next_cursor": next_cursor, "counts": counts, "total": total}


def newest_alerts(alerts: Iterable[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
    """Newest first by `as_of` (RFC 3339 UTC strings sort as instants), then id."""
    return heapq.nlargest(limit, alerts, key=lambda a: (a["as_of"], a["alert_id"]))


def _desc_text(text: str) -> tuple[int, ...]:
    # Descending text order as an ascending key: negated code points, and a sentinel
    # above every negated one so a prefix ("ab") sorts after its extensions ("abc").
    return (*(-ord(c) for c in text), 1)


def _plain(x: Any) -> Any:
    if isinstance(x, Decimal):
        return str(x)
    if isinstance(x, tuple):
        return list(x)
    return x


def _key_from_json(field: str, parts: list[Any]) -> SortKey:
    if field == "customer_id":
        (only,) = parts
        if isinstance(only, list):
            if not all(isinstance(i, int) for i in only):
                raise ValueError("bad cursor")
            return (tuple(only),)
        if not isinstance(only, str):
            raise ValueError("bad cursor")
        return (only,)
    null, value, cid = parts
    if null not in (0, 1) or not isinstance(cid, str):
        raise ValueError("bad cursor")
    return (null, Decimal(value) if null == 0 else 0, cid)
