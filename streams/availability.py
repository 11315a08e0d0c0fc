"""Whether a worker can answer queries now, and the 503 it gives when it cannot.

Pure: the web server (streams/web.py) reads the facts from Faust's public state
(`App.rebalancing`, `App.rebalancing_count`, `App.in_recovery`,
`TableManager.actives_ready`, `Service.should_stop`) into a `WorkerState`, and
answers a table-backed route only when `unavailable_reason` gives None: before the
first assignment, during a table recovery and while partitions move, the table or
the router's metadata is incomplete, and an answer from it would be wrong or fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from models.errors import ProfitwatchError

Reason = Literal[
    "starting",  # not yet through its first rebalance and table recovery
    "recovering",  # restoring its table from the changelog
    "rebalancing",  # partitions are being reassigned between workers
    "stopping",  # shutting down; the group will hand its partitions on
    "no_partitions",  # settled, but the group gave this worker no partition (/ready)
    "broker_unreachable",  # the broker did not answer a metadata request (/ready)
    "worker_unavailable",  # another worker, asked for its part, did not answer it
]

# Seconds for Retry-After: about how long each state lasts here. A stopping or
# unreachable worker's partitions move only once the group notices (a rebalance, or
# the session timeout for a dead one), so those ask for a longer wait.
RETRY_AFTER_S: Final[dict[Reason, int]] = {
    "starting": 2,
    "recovering": 2,
    "rebalancing": 1,
    "stopping": 5,
    "no_partitions": 5,
    "broker_unreachable": 5,
    "worker_unavailable": 3,
}

MESSAGES: Final[dict[Reason, str]] = {
    "starting": "this worker is starting: it has not joined the group or recovered its table yet",
    "recovering": "this worker is restoring its table from the changelog",
    "rebalancing": "partitions are being reassigned between workers",
    "stopping": "this worker is stopping; another one takes its partitions over",
    "no_partitions": "this worker has no partitions",
    "broker_unreachable": "the broker did not answer a metadata request",
    "worker_unavailable": "another worker did not answer its part",
}


@dataclass(frozen=True)
class WorkerState:
    stopping: bool
    in_recovery: bool
    rebalancing: bool
    actives_ready: bool  # the active partitions' tables are recovered
    rebalances: int  # rebalances begun since the start (the first one is the join)


def unavailable_reason(state: WorkerState) -> Reason | None:
    """Why this worker cannot answer from its table and the router now (None: it can)."""
    if state.stopping:
        return "stopping"
    if state.in_recovery:
        return "recovering"
    if state.rebalancing or not state.actives_ready:
        # The first rebalance is the start's own join to the group.
        return "starting" if state.rebalances <= 1 else "rebalancing"
    return None


class Unavailable(ProfitwatchError):
    """A request this worker cannot answer now: HTTP 503, its reason and Retry-After."""

    def __init__(
        self, reason: Reason, message: str | None = None, retry_after_s: int | None = None
    ) -> None:
        self.message = MESSAGES[reason] if message is None else message
        super().__init__(self.message)
        self.reason: Reason = reason
        self.retry_after_s = RETRY_AFTER_S[reason] if retry_after_s is None else retry_after_s

    def body(self) -> dict[str, object]:
        """The API's error shape, with the reason for clients that branch on it."""
        return {"error": {"code": "unavailable", "reason": self.reason, "message": self.message}}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


def peer_reason(body: object) -> Reason | None:
    """The reason in another worker's 503 body, when it is one of ours."""
    error = body.get("error") if isinstance(body, dict) else None
    given = error.get("reason") if isinstance(error, dict) else None
    return next((r for r in RETRY_AFTER_S if r == given), None)
