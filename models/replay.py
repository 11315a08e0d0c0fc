"""Replay (contract section 9): the service's engine over a file, without Kafka.

Records are applied in the order of application (`models/application_order.py`), as
the service would apply them with every record already on the broker: each input
(topic, partition) is a queue in file order, and of the queue heads the earliest
event goes first. A file is counted first (the records per queue: its end offsets),
then read as a stream: a record is applied as soon as no empty queue still has
records to come, so memory holds only the records read ahead of their turn. A line that is no
record of an input topic lies on no queue the service reads: it is dead-lettered as
soon as it is read. A forwarded record (referral link or credit) is applied at once,
so its alerts follow the alerts of the record that caused it.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import jiter

from models.application_order import HeadMerge, order_key
from models.deadletter import dead_letter, dump_json
from models.decode import JSON_CACHE, Decoder
from models.engine import ProfitModel, StepResult
from models.errors import RejectedRecord
from models.events import Event
from models.ledger import CustomerState
from models.partitioner import partition_for, record_key
from models.settings import Settings
from models.timeutil import iso

# A replay-format line, read: (line number, topic, value, wire size if known, key).
ReplayRecord = tuple[int, str, Any, int | None, str | None]


@dataclass(frozen=True, slots=True)
class OutputRecord:
    topic: str
    key: str | None
    value: dict[str, Any]

    def to_line(self) -> str:
        import json

        return json.dumps(
            {"topic": self.topic, "key": self.key, "value": self.value}, ensure_ascii=False
        )


# What decoding made of a record: its event and event time, or its DLQ record.
Decoded = tuple[Event, int] | OutputRecord


class Replayer:
    """All customers' states in a dict, driven record by record."""

    def __init__(self, settings: Settings, *, clock_us: int | None = None) -> None:
        self.settings = settings
        self.model = ProfitModel(settings)
        self.decoder = Decoder(settings)
        self.states: dict[str, CustomerState] = {}
        self.outcomes: Counter[str] = Counter()  # applied / duplicate / stale / rejected
        self.rejections: Counter[str] = Counter()
        self._clock_us = clock_us
        self._topics = settings.topics
        self._ranks = {topic: i for i, topic in enumerate(settings.topics.input_kinds())}
        self._partitions = settings.partitions
        self._partition_of: dict[str, int] = {}  # key -> partition, memoised

    def state(self, customer_id: str) -> CustomerState:
        s = self.states.get(customer_id)
        if s is None:
            s = self.states[customer_id] = CustomerState(customer_id)
        return s

    def feed(
        self,
        topic: str,
        raw: Any,
        *,
        size: int | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> list[OutputRecord]:
        """One input record, applied now -> the alerts and DLQ records it causes."""
        return self.apply(self.decode(topic, raw, size=size, partition=partition, offset=offset))

    def decode(
        self,
        topic: str,
        raw: Any,
        *,
        size: int | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Decoded:
        """Decode a record: its event and event time, or the DLQ record it becomes."""
        now = self._clock_us
        if now is None:
            now = time.time_ns() // 1000  # models.timeutil.now_us, inlined (per record)
        try:
            return self.decoder.decode_at(topic, raw, now_us=now, size=size)
        except RejectedRecord as rej:
            self.rejections[rej.code] += 1
            letter = dead_letter(
                rej,
                topic=topic,
                partition=partition,
                offset=offset,
                original=raw,
                received_at=iso(now) or "",
            )
            return OutputRecord(self._topics.dlq, rej.customer_id, letter.to_wire())

    def apply(self, decoded: Decoded) -> list[OutputRecord]:
        """Apply a decoded record -> the alerts and DLQ records it causes."""
        if type(decoded) is OutputRecord:
            self.outcomes["rejected"] += 1
            return [decoded]
        event, at = decoded  # type: ignore[misc]
        result = self.model.apply_event(self.state(event.customer_id), event, at)
        self.outcomes[result.outcome] += 1
        return self._outputs(event.customer_id, result)

    def partition(self, key: str | None) -> int:
        """The partition a keyed record goes to (Kafka's default partitioner); 0 unkeyed."""
        if key is None:
            return 0
        p = self._partition_of.get(key)
        if p is None:
            p = self._partition_of[key] = partition_for(key.encode("utf-8"), self._partitions)
        return p

    def replay_lines(
        self, lines: Iterable[bytes | str]
    ) -> Iterator[tuple[int, list[OutputRecord]]]:
        """Replay-format lines in the order of application: (line number, outputs).

        Lines that can be read twice (a seekable file, a list) are counted first, so
        only what the order needs is held back; a stream (stdin) holds every queue
        back until it ends."""
        limit = self.settings.max_payload_bytes
        ends = None
        if isinstance(lines, Sequence):
            ends = self.queue_ends(read_records(lines, limit))
        elif isinstance(lines, io.IOBase) and lines.seekable():
            start = lines.tell()
            ends = self.queue_ends(read_records(lines, limit))
            lines.seek(start)
        return self.applied(read_records(lines, limit), ends)

    def queue_of(self, topic: str, key: str | None) -> tuple[int, int] | None:
        """The (topic rank, partition) queue a record is on; None off the input topics."""
        rank = self._ranks.get(topic)
        return None if rank is None else (rank, self.partition(key))

    def queue_ends(self, records: Iterable[ReplayRecord]) -> Counter[tuple[int, int]]:
        """How many records each queue holds: its end offset, with every record of the
        file on the broker."""
        ends: Counter[tuple[int, int]] = Counter()
        queue_of = self.queue_of
        for _, topic, _, _, key in records:
            q = queue_of(topic, key)
            if q is not None:
                ends[q] += 1
        return ends

    def applied(
        self,
        records: Iterable[ReplayRecord],
        ends: Mapping[tuple[int, int], int] | None = None,
    ) -> Iterator[tuple[int, list[OutputRecord]]]:
        """Apply records in the order of application (contract section 9), reading them
        as a stream: (line number, the outputs it caused) in the order applied.

        With `ends` (`queue_ends` of the same records) a queue is caught up once its
        last record is read, as a consumer is at its partition's end offset, so memory
        holds only the records read ahead of their turn. Without, every queue counts
        as behind until the records end: the same order, but a queue that receives no
        more records holds the rest back until then."""
        ranks, partitions = self._ranks, self._partitions
        queues = [(rank, p) for rank in ranks.values() for p in range(partitions)]
        merge: HeadMerge[tuple[int, int], tuple[int, Decoded]] = HeadMerge(queues)
        left: dict[tuple[int, int], int] | None = None
        if ends is not None:
            left = {q: ends.get(q, 0) for q in queues}
            for q in queues:
                if left[q] <= 0:
                    merge.behind(q, False)
        push, pop, decode, apply = merge.push, merge.pop, self.decode, self.apply
        queue_of = self.queue_of
        for n, topic, value, size, key in records:
            decoded = decode(topic, value, size=size, offset=n)
            on = queue_of(topic, key)
            if on is None:  # on no queue the service reads
                yield n, apply(decoded)
                continue
            q = on
            at = None if type(decoded) is OutputRecord else decoded[1]  # type: ignore[index]
            push(q, order_key(at, q[1], q[0]), (n, decoded))
            if left is not None:
                remaining = left[q] = left[q] - 1
                if remaining <= 0:  # its last record is read: the queue is caught up
                    merge.behind(q, False)
            while merge.ready:
                m, d = pop()[1]
                yield m, apply(d)
        while merge:  # the records have ended: every queue is caught up
            m, d = pop()[1]
            yield m, apply(d)

    def _outputs(self, customer_id: str, result: StepResult) -> list[OutputRecord]:
        out: list[OutputRecord] = []
        while True:
            if result.alert is not None:
                out.append(OutputRecord(self._topics.alerts, customer_id, result.alert.to_wire()))
            fwd = result.forward
            if fwd is None:
                return out
            customer_id = fwd.referred_id if hasattr(fwd, "referred_id") else fwd.referrer_id
            result = self.model.apply(self.state(customer_id), fwd)

    def sweep(self, as_of_us: int) -> list[OutputRecord]:
        out: list[OutputRecord] = []
        for cid in sorted(self.states):
            result = self.model.sweep(self.states[cid], as_of_us)
            if result.alert is not None:
                out.append(OutputRecord(self._topics.alerts, cid, result.alert.to_wire()))
        return out

    def snapshots(self) -> list[OutputRecord]:
        return [
            OutputRecord(self._topics.snapshots, cid, self.model.snapshot(s).to_wire())
            for cid, s in sorted(self.states.items())
            if s.has_own_events
        ]


def read_records(lines: Iterable[bytes | str], max_bytes: int) -> Iterator[ReplayRecord]:
    """Replay-format lines -> (line number, topic, value, wire size if known, key).

    Lines are best given as bytes (a file opened in binary mode): jiter parses bytes,
    so text would be decoded and encoded again for nothing. A line that is not a
    replay record at all is passed on raw under the topic it names (or ""), so it
    ends up in the DLQ instead of stopping the run. The key is the one the record
    would be produced with (`models.partitioner.record_key`)."""
    for n, line in enumerate(lines):
        raw = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
        if not raw or raw.isspace():  # not strip(): that copies every line
            continue
        try:
            # As the decoder: a line with NaN or Infinity is not JSON.
            rec = jiter.from_json(
                raw, float_mode="decimal", cache_mode=JSON_CACHE, allow_inf_nan=False
            )
        except ValueError:
            yield n, "", raw.rstrip(b"\r\n"), None, None
            continue
        if not isinstance(rec, dict):
            yield n, "", raw.rstrip(b"\r\n"), None, None
            continue
        topic = rec.get("topic")
        if not isinstance(topic, str) or "value" not in rec:
            topic = topic if isinstance(topic, str) else ""
            yield n, topic, raw.rstrip(b"\r\n"), None, record_key(rec)
            continue
        value = rec["value"]
        key = record_key(rec)
        if isinstance(value, str):
            yield n, topic, value, None, key
        elif len(raw) > max_bytes:
            # The value's wire size (compact JSON) is only needed near the limit: a
            # line is longer than the value it holds, so a short line is in bounds.
            yield n, topic, value, len(dump_json(value).encode("utf-8", "surrogatepass")), key
        else:
            yield n, topic, value, None, key


def replay(
    lines: Iterable[bytes | str],
    settings: Settings,
    out: IO[str],
    *,
    as_of_us: int | None = None,
) -> Replayer:
    """`profitwatch replay`: the outputs of `lines` to `out` (contract section 9)."""
    r = Replayer(settings)
    write = out.write
    for _, outputs in r.replay_lines(lines):
        for rec in outputs:
            write(rec.to_line() + "\n")
    if as_of_us is not None:
        for rec in r.sweep(as_of_us):
            write(rec.to_line() + "\n")
    for rec in r.snapshots():
        write(rec.to_line() + "\n")
    return r
