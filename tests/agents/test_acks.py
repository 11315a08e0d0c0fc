"""Acks after delivery (streams/acks.py): a record is acknowledged only once what it
caused is on the broker, in offset order per partition."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from streams.acks import AckAfterDelivery


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int


@dataclass
class Ev:
    message: Msg
    log: list[tuple[str, int, int]] = field(default_factory=list)

    def ack(self) -> bool:
        m = self.message
        self.log.append((m.topic, m.partition, m.offset))
        return True


class Outputs:
    """The flush and the deliveries, held back until a test lets them go."""

    def __init__(self) -> None:
        self.flushes = 0
        self.shipped = asyncio.Event()

    def flush(self) -> None:
        self.flushes += 1

    async def delivered(self) -> None:
        await self.shipped.wait()


def events(log: list[tuple[str, int, int]], *offsets: int, topic: str = "orders") -> list[Ev]:
    return [Ev(Msg(topic, 0, o), log) for o in offsets]


async def test_records_are_acked_only_after_states_snapshots_and_sends_are_delivered() -> None:
    out = Outputs()
    log: list[tuple[str, int, int]] = []
    acks = AckAfterDelivery(out.flush, out.delivered, every=2)
    for e in events(log, 5, 6):
        acks.applied(e)
    alert: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    acks.sent(alert)
    assert acks.due
    commit = asyncio.ensure_future(acks.commit())
    await asyncio.sleep(0.01)
    assert out.flushes == 1 and log == []  # the states are written, not yet delivered
    out.shipped.set()
    await asyncio.sleep(0.01)
    assert log == [] and not commit.done()  # the alert is still on its way
    # Applied meanwhile: belongs to the next commit.
    acks.applied(events(log, 7)[0])
    alert.set_result(None)
    assert await commit == 2
    assert log == [("orders", 0, 5), ("orders", 0, 6)]
    assert await acks.commit() == 1 and log[-1] == ("orders", 0, 7)


async def test_a_failed_delivery_acks_nothing() -> None:
    out = Outputs()
    log: list[tuple[str, int, int]] = []
    out.shipped.set()
    acks = AckAfterDelivery(out.flush, out.delivered, every=10)
    acks.applied(events(log, 1)[0])
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(RuntimeError("broker gone"))
    acks.sent(failed)
    with pytest.raises(RuntimeError):
        await acks.commit()
    assert log == []  # unacked: redelivered after the crash this raises into


async def test_a_record_delivered_again_is_acked_without_moving_the_partition() -> None:
    """Faust seeks back to the committed offset after recovery: records already applied
    and acked come again in the same assignment. They are covered: acked, counted,
    and the partition's highest acked offset stays where it was."""
    out = Outputs()
    log: list[tuple[str, int, int]] = []
    out.shipped.set()
    acks = AckAfterDelivery(out.flush, out.delivered, every=10)
    for e in events(log, 3, 4):
        acks.applied(e)
    await acks.commit()
    for e in events(log, 3, 4, 5):  # 3 and 4 again, then one new record
        acks.applied(e)
    assert await acks.commit() == 3
    assert acks.redelivered == 2
    assert acks._acked[("orders", 0)] == 5
    assert log == [("orders", 0, o) for o in (3, 4, 3, 4, 5)]
    # Another partition, or the same one after a revoke, starts afresh.
    acks.forget([("orders", 0)])
    acks.applied(events(log, 0)[0])
    acks.applied(Ev(Msg("orders", 1, 0), log))
    assert await acks.commit() == 2
    assert acks.redelivered == 2


async def test_forget_drops_the_revoked_partitions_applied_records() -> None:
    out = Outputs()
    log: list[tuple[str, int, int]] = []
    out.shipped.set()
    acks = AckAfterDelivery(out.flush, out.delivered, every=10)
    acks.applied(Ev(Msg("orders", 0, 1), log))
    acks.applied(Ev(Msg("orders", 1, 1), log))
    acks.applied(Ev(Msg("referrals", 0, 9), log))
    assert acks.forget([("orders", 0), ("referrals", 0)]) == 2
    assert await acks.commit() == 1
    assert log == [("orders", 1, 1)]
    assert out.flushes == 1  # the states are still written: the next owner restores them


async def test_a_partition_revoked_while_a_commit_waits_is_not_acked_by_it() -> None:
    """Acked after the revoke, its records would reach Faust's bookkeeping of the
    partition's next assignment, which starts again from the committed offset."""
    out = Outputs()
    log: list[tuple[str, int, int]] = []
    acks = AckAfterDelivery(out.flush, out.delivered, every=10)
    acks.applied(Ev(Msg("orders", 0, 4), log))
    acks.applied(Ev(Msg("orders", 1, 8), log))
    commit = asyncio.ensure_future(acks.commit())
    await asyncio.sleep(0.01)  # waiting for the deliveries
    acks.forget([("orders", 0)])
    out.shipped.set()
    assert await commit == 1
    assert log == [("orders", 1, 8)]
    acks.applied(Ev(Msg("orders", 0, 4), log))  # assigned again, read again
    assert await acks.commit() == 1 and log[-1] == ("orders", 0, 4)
