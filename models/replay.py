"""Replay (spec section 9): the service's engine over a file, without Kafka.

Records are processed in file order; a forwarded record (referral link or credit)
is applied at once, so its alerts follow the alerts of the record that caused it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import jiter

from models.deadletter import dead_letter, dump_json
from models.decode import JSON_CACHE, Decoder
from models.engine import ProfitModel, StepResult
from models.errors import RejectedRecord
from models.ledger import CustomerState
from models.settings import Settings
from models.timeutil import iso


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
        """One input record -> the alerts and DLQ records it causes."""
        now = self._clock_us
        if now is None:
            now = time.time_ns() // 1000  # models.timeutil.now_us, inlined (per record)
        try:
            event, at = self.decoder.decode_at(topic, raw, now_us=now, size=size)
        except RejectedRecord as rej:
            self.outcomes["rejected"] += 1
            self.rejections[rej.code] += 1
            letter = dead_letter(
                rej,
                topic=topic,
                partition=partition,
                offset=offset,
                original=raw,
                received_at=iso(now) or "",
            )
            return [OutputRecord(self._topics.dlq, rej.customer_id, letter.to_wire())]
        result = self.model.apply_event(self.state(event.customer_id), event, at)
        self.outcomes[result.outcome] += 1
        return self._outputs(event.customer_id, result)

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


def read_records(
    lines: Iterable[bytes | str], max_bytes: int
) -> Iterator[tuple[int, str, Any, int | None]]:
    """Replay-format lines -> (line number, topic, value, wire size if known).

    Lines are best given as bytes (a file opened in binary mode): jiter parses bytes,
    so text would be decoded and encoded again for nothing. A line that is not a
    replay record at all is passed on raw under the topic it names (or ""), so it
    ends up in the DLQ instead of stopping the run."""
    for n, line in enumerate(lines):
        raw = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
        if not raw or raw.isspace():  # not strip(): that copies every line
            continue
        try:
            rec = jiter.from_json(raw, float_mode="decimal", cache_mode=JSON_CACHE)
        except ValueError:
            yield n, "", raw.rstrip(b"\r\n"), None
            continue
        topic = rec.get("topic") if isinstance(rec, dict) else None
        if not isinstance(topic, str) or "value" not in rec:
            yield n, topic if isinstance(topic, str) else "", raw.rstrip(b"\r\n"), None
            continue
        value = rec["value"]
        if isinstance(value, str):
            yield n, topic, value, None
        elif len(raw) > max_bytes:
            # The value's wire size (compact JSON) is only needed near the limit: a
            # line is longer than the value it holds, so a short line is in bounds.
            yield n, topic, value, len(dump_json(value).encode("utf-8", "surrogatepass"))
        else:
            yield n, topic, value, None


def replay(
    lines: Iterable[bytes | str],
    settings: Settings,
    out: IO[str],
    *,
    as_of_us: int | None = None,
) -> Replayer:
    r = Replayer(settings)
    write = out.write
    for n, topic, value, size in read_records(lines, settings.max_payload_bytes):
        for rec in r.feed(topic, value, size=size, partition=None, offset=n):
            write(rec.to_line() + "\n")
    if as_of_us is not None:
        for rec in r.sweep(as_of_us):
            write(rec.to_line() + "\n")
    for rec in r.snapshots():
        write(rec.to_line() + "\n")
    return r
