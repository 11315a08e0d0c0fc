"""The service's order of application (contract section 9) as pure logic: a group per
partition, its queues, what Kafka knows of each queue's lag, the waits and the bound."""

from __future__ import annotations

from models.group_order import GroupOrder

TOPICS = ("orders", "invoice-overdue", "support-tickets", "referrals", "sales-activities")
ORD, INV, S, R, A = TOPICS


class Broker:
    """End offsets as a test sets them; None: not known yet."""

    def __init__(self) -> None:
        self.ends: dict[tuple[str, int], int | None] = {}

    def end(self, topic: str, partition: int) -> int | None:
        return self.ends.get((topic, partition))

    def caught_up(self, order: GroupOrder[str], *partitions: int) -> None:
        """Every queue of these partitions is at its end offset."""
        for p in partitions:
            for t in TOPICS:
                self.ends[(t, p)] = order.next_offset.get((t, p), 0)


def make(broker: Broker, **kw: float) -> GroupOrder[str]:
    order: GroupOrder[str] = GroupOrder(TOPICS, broker.end, **kw)  # type: ignore[arg-type]
    order.assign({(t, p): 0 for t in TOPICS for p in (0, 1)})
    return order


def names(
    order: GroupOrder[str], now: float = 0.0, partitions: list[int] | None = None
) -> list[str]:
    return [r.item for r in order.release(now, partitions)]


def test_heads_go_by_event_time_then_topic_order_and_rejected_at_once() -> None:
    b = Broker()
    order = make(b)
    order.receive(S, 0, 0, 20, "ticket@20", 0)
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    order.receive(INV, 0, 0, 20, "invoice@20", 0)
    order.receive(A, 0, 0, None, "rejected sales", 0)
    b.caught_up(order, 0)
    assert names(order) == ["rejected sales", "invoice@20", "ticket@20", "order@30"]
    assert order.held == 0


def test_within_a_queue_offset_order_is_kept() -> None:
    b = Broker()
    order = make(b)
    order.receive(ORD, 0, 0, 30, "o1@30", 0)
    order.receive(ORD, 0, 1, 10, "o2@10", 0)
    order.receive(S, 0, 0, 20, "t@20", 0)
    b.caught_up(order, 0)
    assert names(order) == ["t@20", "o1@30", "o2@10"]


def test_an_empty_queue_behind_its_end_offset_holds_the_group_back() -> None:
    b = Broker()
    order = make(b)
    b.caught_up(order, 0)
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    b.ends[(ORD, 0)] = 1
    b.ends[(S, 0)] = 5  # tickets 0-4 are on the broker, not received yet
    assert names(order) == []
    assert order.waiting_on() == [(S, 0)]
    order.receive(S, 0, 0, 10, "ticket@10", 1)
    assert names(order, 1) == ["ticket@10"]  # the queue is empty again, still behind
    for off in range(1, 5):
        order.receive(S, 0, off, 40 + off, f"ticket@{40 + off}", 2)
    assert names(order, 2) == ["order@30", "ticket@41", "ticket@42", "ticket@43", "ticket@44"]
    assert order.enforced == 0


def test_an_unknown_end_offset_or_position_counts_as_behind() -> None:
    b = Broker()
    order: GroupOrder[str] = GroupOrder(TOPICS, b.end)
    order.assign({(t, 0): (None if t == S else 0) for t in TOPICS})
    b.caught_up(order, 0)
    b.ends[(INV, 0)] = None  # never fetched: lag unknown
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    b.ends[(ORD, 0)] = 1
    assert names(order) == []
    assert set(order.waiting_on()) == {(INV, 0), (S, 0)}
    b.ends[(INV, 0)] = 0
    order.assign({(S, 0): 0})  # the position is known now
    assert names(order) == ["order@30"]


def test_a_partition_not_fetched_yet_is_waited_for_without_a_time_limit() -> None:
    """Its end offset comes with the first fetch, which after a rebalance on a busy
    host can take longer than max_lag_wait_ms: going on without it would apply the
    group's records out of order (KIP-695 waits while the lag is unknown)."""
    b = Broker()
    order = make(b, max_lag_wait_ms=2000)
    b.caught_up(order, 0)
    b.ends[(INV, 0)] = None  # never fetched in this assignment
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    b.ends[(ORD, 0)] = 1
    assert names(order, 60_000) == []
    assert order.enforced == 0 and order.waiting_on() == [(INV, 0)]
    b.ends[(INV, 0)] = 0  # fetched: nothing there
    assert names(order, 60_001) == ["order@30"]


def test_a_caught_up_queue_holds_nothing_back_unless_max_idle_ms() -> None:
    b = Broker()
    order = make(b)
    b.caught_up(order, 0)
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    b.ends[(ORD, 0)] = 1
    assert names(order) == ["order@30"]

    idle_b = Broker()
    idle = make(idle_b, max_idle_ms=50)
    idle_b.caught_up(idle, 0)
    idle.receive(ORD, 0, 0, 30, "order@30", 100)
    idle_b.ends[(ORD, 0)] = 1
    assert names(idle, 100) == []  # waits for late producers...
    assert names(idle, 149) == []
    assert names(idle, 150) == ["order@30"]  # ... for 50 ms
    assert idle.enforced == 4  # the four empty queues it went on without


def test_max_lag_wait_ms_bounds_the_wait_for_a_record_that_does_not_come() -> None:
    b = Broker()
    order = make(b, max_lag_wait_ms=2000)
    b.caught_up(order, 0)
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    b.ends[(ORD, 0)] = 1
    b.ends[(R, 0)] = 1  # a transaction marker: the end offset is ahead, no record comes
    assert names(order, 0) == []
    assert names(order, 1999) == []
    assert order.enforced == 0
    assert names(order, 2000) == ["order@30"]
    assert order.enforced == 1
    # The next wait on the same queue starts afresh.
    order.receive(ORD, 0, 1, 40, "order@40", 3000)
    b.ends[(ORD, 0)] = 2
    assert names(order, 3000) == []
    assert names(order, 5000) == ["order@40"]
    assert order.enforced == 2


def test_a_wait_ends_when_the_record_arrives() -> None:
    b = Broker()
    order = make(b, max_lag_wait_ms=2000)
    b.caught_up(order, 0)
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    b.ends[(ORD, 0)] = 1
    b.ends[(R, 0)] = 1
    assert names(order, 1500) == []
    order.receive(R, 0, 0, 50, "referral@50", 1600)
    assert names(order, 1600) == ["order@30", "referral@50"]
    assert order.enforced == 0


def test_groups_are_independent() -> None:
    b = Broker()
    order = make(b)
    b.caught_up(order, 0, 1)
    b.ends[(S, 0)] = 3  # group 0 waits for its tickets
    order.receive(ORD, 0, 0, 30, "p0 order", 0)
    order.receive(ORD, 1, 0, 40, "p1 order", 0)
    b.ends[(ORD, 0)] = b.ends[(ORD, 1)] = 1
    assert names(order) == ["p1 order"]
    assert names(order, partitions=[0]) == []
    assert order.held == 1


def test_late_records_are_marked() -> None:
    b = Broker()
    order = make(b)
    b.caught_up(order, 0)
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    b.ends[(ORD, 0)] = 1
    assert [r.late for r in order.release(0)] == [False]
    order.receive(S, 0, 0, 10, "ticket@10", 5)  # produced late: its turn has passed
    b.ends[(S, 0)] = 1
    (r,) = order.release(7)
    assert (r.item, r.late, r.held_ms) == ("ticket@10", True, 2)


def test_the_memory_bound_pauses_what_is_ahead_never_what_the_group_waits_on() -> None:
    b = Broker()
    order = make(b, max_held=4)
    b.caught_up(order, 0, 1)
    b.ends[(S, 0)] = 10  # group 0 waits for tickets
    for off in range(4):
        order.receive(ORD, 0, off, 100 + off, f"o{off}", 0)
        order.receive(INV, 0, off, 100 + off, f"i{off}", 0)
    b.ends[(ORD, 0)] = b.ends[(INV, 0)] = 4
    assert names(order) == []
    pause, resume = order.flow()
    assert pause == {(ORD, 0), (INV, 0)} and resume == set() and order.pauses == 2
    assert (S, 0) in order.waiting_on() and (S, 0) not in order.paused
    assert order.flow() == (set(), set())  # already paused
    # The tickets arrive, and one more order is on the broker: the group releases
    # up to the last order it has, then waits for the next one.
    b.ends[(ORD, 0)] = 5
    order.receive(S, 0, 0, 50, "t@50", 1)
    order.receive(S, 0, 1, 200, "t@200", 1)
    released = names(order, 1)
    assert released[0] == "t@50" and released[-1] == "o3" and len(released) == 8
    assert order.held == 2 and order.waiting_on() == [(ORD, 0)]
    pause, resume = order.flow()
    assert pause == set() and resume == {(ORD, 0)}  # paused, empty, waited on
    order.receive(ORD, 0, 4, 300, "o4", 2)
    assert names(order, 2) == ["i3", "t@200"]
    pause, resume = order.flow()
    assert pause == set() and resume == {(INV, 0)}  # below half the bound
    assert order.paused == set()


def test_a_paused_queue_that_runs_empty_is_resumed() -> None:
    b = Broker()
    order = make(b, max_held=2)
    b.caught_up(order, 0)
    for off in range(3):
        order.receive(ORD, 0, off, 100, f"o{off}", 0)
    b.ends[(ORD, 0)] = 10  # more orders on the broker
    b.ends[(S, 0)] = 1
    order.flow()
    assert order.paused == {(ORD, 0)}
    order.receive(S, 0, 0, 150, "t@150", 1)
    assert names(order, 1) == ["o0", "o1", "o2"]  # then orders are empty and behind
    order.receive(S, 0, 1, 160, "t@160", 1)
    order.receive(S, 0, 2, 170, "t@170", 1)
    order.receive(S, 0, 3, 180, "t@180", 1)
    b.ends[(S, 0)] = 4
    assert order.held == 4 > order.max_held
    pause, resume = order.flow()
    assert (ORD, 0) in resume  # the group waits on it: never left paused
    assert (S, 0) in pause


def test_a_revoke_drops_held_records_unacknowledged() -> None:
    b = Broker()
    order = make(b)
    b.caught_up(order, 0, 1)
    b.ends[(S, 0)] = 1
    order.receive(ORD, 0, 0, 30, "p0 order", 0)
    order.receive(ORD, 1, 0, 30, "p1 order", 0)
    b.ends[(ORD, 0)] = b.ends[(ORD, 1)] = 1
    assert names(order, partitions=[1]) == ["p1 order"]
    assert order.revoke([0]) == ["p0 order"]
    assert order.held == 0 and 0 not in order.groups
    assert (ORD, 0) not in order.next_offset
    assert order.release(0) == []
    # Assigned again: it starts from the position Kafka gives (the committed offset).
    order.assign({(t, 0): 0 for t in TOPICS})
    b.caught_up(order, 0)
    order.receive(ORD, 0, 0, 30, "p0 order", 10)
    b.ends[(ORD, 0)] = 1
    assert names(order, 10) == ["p0 order"]


def test_records_in_transit_are_waited_for_without_limit() -> None:
    b = Broker()
    fetched: dict[tuple[str, int], int] = {}
    order: GroupOrder[str] = GroupOrder(
        TOPICS, b.end, lambda t, p: fetched.get((t, p)), max_lag_wait_ms=100
    )
    order.assign({(t, 0): 0 for t in TOPICS})
    b.caught_up(order, 0)
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    b.ends[(ORD, 0)] = 1
    b.ends[(S, 0)] = 3
    fetched[(S, 0)] = 3  # fetched by the worker, still on its way to the queue
    assert names(order, 0) == []
    assert names(order, 10_000) == []  # no time limit: they are coming
    assert order.enforced == 0
    order.receive(S, 0, 0, 10, "t@10", 10_001)
    order.receive(S, 0, 1, 20, "t@20", 10_001)
    order.receive(S, 0, 2, 40, "t@40", 10_001)
    assert names(order, 10_001) == ["t@10", "t@20", "order@30", "t@40"]
    # A transaction marker at offset 3: the end moves, nothing more is fetched.
    b.ends[(S, 0)] = 4
    order.receive(ORD, 0, 1, 50, "order@50", 20_000)
    b.ends[(ORD, 0)] = 2
    assert names(order, 20_050) == []  # the wait starts when the group first waits
    assert names(order, 20_149) == []
    assert names(order, 20_150) == ["order@50"] and order.enforced == 1


def test_a_partition_read_again_from_the_committed_offset_queues_nothing_twice() -> None:
    b = Broker()
    order = make(b)
    b.caught_up(order, 0)
    assert order.receive(ORD, 0, 0, 30, "o0", 0)
    assert order.receive(ORD, 0, 1, 31, "o1", 0)
    assert order.next_offset[(ORD, 0)] == 2
    # Faust seeks back to the committed offset (0) and delivers them again.
    assert not order.receive(ORD, 0, 1, 31, "o1 again", 1)
    assert not order.receive(ORD, 0, 0, 30, "o0 again", 1)
    assert order.receive(ORD, 0, 2, 32, "o2", 1)
    b.ends[(ORD, 0)] = 3
    assert names(order, 1) == ["o0", "o1", "o2"] and order.held == 0


def test_a_partition_the_client_has_not_read_to_its_end_is_waited_for_without_limit() -> None:
    b = Broker()
    positions: dict[tuple[str, int], int] = {}
    order: GroupOrder[str] = GroupOrder(
        TOPICS, b.end, None, lambda t, p: positions.get((t, p)), max_lag_wait_ms=100
    )
    order.assign({(t, 0): 0 for t in TOPICS})
    b.caught_up(order, 0)
    order.receive(ORD, 0, 0, 30, "order@30", 0)
    b.ends[(ORD, 0)] = 1
    b.ends[(S, 0)] = 50  # a backlog the client has read up to offset 20
    positions[(S, 0)] = 20
    assert names(order, 0) == [] and names(order, 60_000) == []  # it is coming
    assert order.enforced == 0
    positions[(S, 0)] = 50  # read to the end, nothing arrived: offsets without records
    assert names(order, 60_050) == []
    assert names(order, 60_150) == ["order@30"] and order.enforced == 1


def test_records_below_the_position_at_assignment_are_still_taken() -> None:
    # Faust seeks back to the committed offsets once tables are recovered, so records
    # below the position asked at assignment can come; they were never received here,
    # and dropping them as "received before" lost them (Faust then committed past).
    b = Broker()
    order: GroupOrder[str] = GroupOrder(TOPICS, b.end)
    order.assign({(ORD, 0): 10})
    assert order.receive(ORD, 0, 5, 30, "below the position", 0)
    # What was received is still refused a second time: queued twice, it would overtake
    # itself.
    assert not order.receive(ORD, 0, 5, 30, "again", 0)
    assert order.receive(ORD, 0, 6, 31, "next", 0)
