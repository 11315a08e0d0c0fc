"""Records of a topic-partition are taken in offset order with none left out
(models/contiguity.py): a record after a gap is refused until the partition was read
again from the gap."""

from __future__ import annotations

from models.contiguity import Contiguity, Probe, Verdict

TP = ("orders", 3)


def taken(c: Contiguity, *offsets: int) -> list[Verdict]:
    return [c.judge(TP, o)[0] for o in offsets]


def gap_at(got: int) -> tuple[Contiguity, Probe]:
    """Offsets 0-2 taken, then `got` comes: a gap from 3."""
    c = Contiguity()
    c.assign(TP, 0)
    assert taken(c, 0, 1, 2) == [Verdict.NEXT] * 3
    verdict, probe = c.judge(TP, got)
    assert verdict is Verdict.GAP and probe is not None
    assert (probe.back_to, probe.got) == (3, got)
    return c, probe


def test_consecutive_offsets_are_taken_and_lower_ones_are_redeliveries() -> None:
    c = Contiguity()
    c.assign(TP, 10)
    assert taken(c, 10, 11, 12) == [Verdict.NEXT] * 3
    assert taken(c, 11, 12) == [Verdict.AGAIN] * 2
    assert c.next[TP] == 13 and c.gaps == 0


def test_the_first_record_may_be_below_the_position_at_assignment() -> None:
    """Faust seeks back to the committed offset, which can be below the position."""
    c = Contiguity()
    c.assign(TP, 10)
    assert taken(c, 7, 8) == [Verdict.NEXT] * 2


def test_a_first_record_past_the_position_is_a_gap() -> None:
    c = Contiguity()
    c.assign(TP, 10)
    verdict, probe = c.judge(TP, 14)
    assert verdict is Verdict.GAP and probe is not None
    assert (probe.back_to, probe.got) == (10, 14)
    assert c.judge(TP, 15)[0] is Verdict.EARLY  # no second seek while one is under way
    c.sought(probe)
    assert taken(c, 10, 11) == [Verdict.NEXT] * 2


def test_a_gap_is_refused_until_read_again_then_taken_in_order() -> None:
    """The defect this guards against: Faust skipped offset 134 of a partition in a
    rebalance test; taking 135 made 134 look like a redelivery to its next owner."""
    c, probe = gap_at(4)
    # Records fetched before the seek keep coming: none is taken.
    assert taken(c, 5, 6) == [Verdict.EARLY] * 2
    c.sought(probe)
    assert taken(c, 7) == [Verdict.EARLY]  # still from before the seek: past `got`
    assert taken(c, 3, 4, 5, 6, 7) == [Verdict.NEXT] * 5
    assert c.gaps == 1 and c.empty == 0 and not c.probes


def test_offsets_that_hold_no_record_are_passed_once_read_again() -> None:
    """A transaction marker at 3: read again from 3, the first record is 4 again."""
    c, probe = gap_at(4)
    assert c.judge(TP, 4)[0] is Verdict.EARLY  # before the seek is done: not proof
    c.sought(probe)
    assert taken(c, 4, 5) == [Verdict.NEXT] * 2
    assert (c.gaps, c.empty) == (1, 1)


def test_read_again_the_first_record_inside_the_gap_is_taken() -> None:
    """Offsets 3-4 hold nothing, 5 was skipped: 5 comes first after the seek."""
    c, probe = gap_at(7)
    c.sought(probe)
    assert taken(c, 5, 6, 7) == [Verdict.NEXT] * 3


def test_a_failed_seek_lets_the_next_record_ask_again() -> None:
    c, probe = gap_at(5)
    c.seek_failed(probe)
    verdict, again = c.judge(TP, 6)
    assert verdict is Verdict.GAP and again is not None and again.back_to == 3
    c.sought(probe)  # the old seek, done late, proves nothing for the new one
    assert not again.sought
    assert c.judge(TP, 6)[0] is Verdict.EARLY


def test_a_revoke_forgets_the_partition() -> None:
    c, probe = gap_at(5)
    c.revoke(TP)
    c.sought(probe)  # a seek finished after the revoke changes nothing
    assert not c.probes and TP not in c.next
    c.assign(TP, 40)
    assert taken(c, 40) == [Verdict.NEXT]


def test_an_unknown_position_takes_the_first_record_as_it_comes() -> None:
    c = Contiguity()
    c.assign(TP, None)
    assert taken(c, 500, 501) == [Verdict.NEXT] * 2
    assert c.judge(TP, 503)[0] is Verdict.GAP


def test_untaken_partitions_are_the_ones_to_seek_to_their_start() -> None:
    """aiokafka's seek_to_committed skips a partition with no offset committed: the
    worker seeks those itself, once tables are recovered."""
    c = Contiguity()
    c.assign(TP, 0)
    c.assign(("orders", 1), 12)
    c.assign(("orders", 2), None)  # unknown: nothing to seek to
    assert c.untaken() == {TP: 0, ("orders", 1): 12}
    c.judge(TP, 0)
    assert c.untaken() == {("orders", 1): 12}
