"""What the agents do with a record, without Faust: decode -> engine -> table -> outputs.

The agents (streams/agents.py) hand every record to a `Processor` and give it two
things: the table (a mapping of customer id bytes -> state bytes) and a `send`
function. Keeping Faust out of here makes the whole path testable with a dict and a
list, and keeps every step of one record free of `await`, so two agents can never
interleave between reading a customer's state and writing it back.

Co-partitioning. Every topic the service reads has the same partition count and is
keyed by customer id with Kafka's default (murmur2) partitioner, so a customer's
records, its table entry (Faust writes the changelog to the record's partition) and
its internal records all live on one partition number. A record whose key is not its
customer id, or that sits on the wrong partition, is re-keyed through the internal
topic before it touches state.

Internal topic records (JSON, key = target customer id):
    {"k": "event",  "topic": input topic, "value": raw value text}   re-keyed input
    {"k": "link",   "referred", "referrer", "at", "id"}             referral -> referred
    {"k": "credit", "id", "referrer", "amount", "at"}               credit -> referrer
    {"k": "sweep",  "as_of"[, "after"]}                             sweep this partition
The first three also carry "src": [source, offset], where the record they come from
was consumed (see Positions).

Positions. Every record applied to a customer comes down one first-in-first-out path
from a source topic-partition: its own input partition ("order/3"), or through the
internal topic from the partition where the record that caused it was consumed
("~order/1" for a re-keyed order, "~internal/2" for a credit of an order consumed
there). Each path delivers in offset order, so the state keeps the highest applied
offset per path (`CustomerState.positions`), and a record at or below it is one the
transport delivered again: a duplicate, even when its id has expired from `seen`
(ids are kept for two windows of the customer's event time, which a fast backfill
can cover between a record's application and its redelivery after a crash).
"""

from __future__ import annotations

import asyncio
import json
import logging
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from time import perf_counter
from typing import Any

from models import codec
from models.cloudevents import alert_headers, is_structured, snapshot_headers, source_of
from models.deadletter import dead_letter, record_headers
from models.decode import Decoder
from models.engine import ProfitModel, ReferralCredit, ReferralLink, StepResult
from models.errors import RejectedRecord, StateFormatError
from models.events import Event
from models.ledger import CustomerState
from models.outputs import Alert
from models.partitioner import partition_for
from models.query import Row, row_of
from models.settings import Settings
from models.timeutil import iso, now_us
from streams.metrics import Metrics, Tallies

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
# An input record's headers as Faust hands them over: pairs (values may be None) or a
# mapping.
RecordHeaders = Sequence[tuple[str, bytes | None]] | Mapping[str, bytes | None]
# An input record judged: its event and event time (epoch µs), or its rejection.
Decoded = tuple[Event, int] | RejectedRecord
# Where a record was consumed: (source topic-partition, offset); see Positions.
Position = tuple[str, int]
# send(topic, key, value, headers, partition)
Send = Callable[[str, bytes | None, bytes, Headers | None, int | None], None]


@dataclass(slots=True)
class IndexEntry:
    """What the list routes need of one customer, kept between queries."""

    row: Row
    alerts: list[dict[str, Any]]


def _record_id(record: Event | ReferralLink | ReferralCredit) -> str:
    if isinstance(record, ReferralCredit):
        return record.credit_id
    return record.event_id


def _remembered(state: CustomerState, record: Event | ReferralLink | ReferralCredit) -> bool:
    """Does the state still know the record by its id (so the engine's duplicate path,
    which re-forwards and re-sends, applies)? A link: always, once linked."""
    if isinstance(record, ReferralLink):
        return state.referred_by is not None
    return _record_id(record) in state.seen


def _origin(path: Position | None, here: Position) -> Position:
    """The `src` of what a record forwards: its own path, so that every copy of one
    forward (re-sent after a crash, or its cause re-keyed twice) names one position.
    Through the internal topic the route joins the key: records of one source reach
    the receiver in source order only per internal partition they passed."""
    if path is None:
        return here
    source, offset = path
    if source.startswith("~"):
        return (f"{source[1:]}@{here[0]}", offset)
    return path


def _path(rec: dict[str, Any]) -> Position | None:
    """The path of an internal record (see Positions); None for one written before."""
    src = rec.get("src")
    if src is None:
        return None
    source, offset = src
    if not isinstance(source, str) or type(offset) is not int:
        raise ValueError(f"malformed src {src!r}")
    return ("~" + source, offset)


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Processor:
    """One per worker: the engine, a read cache over the table, and the outputs."""

    def __init__(
        self,
        settings: Settings,
        table: MutableMapping[bytes, bytes],
        send: Send,
        *,
        clock: Callable[[], int] = now_us,
        coalesce: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.model = ProfitModel(settings)
        self.decoder = Decoder(settings)
        self.table = table
        self.send = send
        self.clock = clock
        self.partitions = settings.partitions
        self._kind_of = settings.topics.input_kinds()
        self.ce_source = source_of(settings.app_id)  # every output's CloudEvents source
        # Decoded states of this worker's customers. Without coalescing every change is
        # written through to the table; with it (the service) a changed state is held
        # here until the next flush (see `coalesce` below). Dropped, after a flush,
        # whenever partitions are revoked.
        self.cache: OrderedDict[bytes, CustomerState] = OrderedDict()  # LRU order
        # A decoded year of history is ~60 KiB (Decimals) plus ~30 KiB of codec memo:
        # the cache keeps the most recently used states only.
        self.cache_limit = settings.state_cache_customers
        # With coalescing, a changed customer's state is written to the table and its
        # snapshot sent once per commit, not once per record (Kafka Streams' record
        # cache): the commit step (streams/acks.py) calls `flush()` and acknowledges
        # records only once what it wrote is delivered, so every committed record's
        # state and snapshot are out before its offset is, whatever crashes when.
        # Until then the cache holds the only copy: a changed
        # state leaving the cache is written first. A table write per record costs
        # a changelog send and its delivery callback, the larger part of a record.
        self.coalesce = coalesce
        self.dirty: set[bytes] = set()  # states changed since they were last written
        self.owed: set[bytes] = set()  # snapshots owed
        self.metrics = metrics
        self.tallies = Tallies()
        self.outcomes = self.tallies.outcomes  # (topic, outcome)
        self.rejections = self.tallies.rejections  # (topic, code)
        self.alerts = self.tallies.alerts
        self._statuses = self.tallies.statuses
        # Every customer's status as last counted (cached or not), for the gauge.
        self._status_of: dict[bytes, str] = {}
        # The query API's view of this worker's customers, refreshed lazily: records
        # only mark a customer as changed; a query re-reads the changed ones.
        self._index: dict[bytes, IndexEntry] = {}
        self._changed: set[bytes] = set()
        self._indexed = False  # has the index seen every key of the table yet?
        # Per internal partition, the sweep under way: (as_of, its customers, sorted).
        self._sweep_keys: dict[int, tuple[int, list[bytes]]] = {}

    # ---- inputs ----------------------------------------------------------------------

    def on_input(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: RecordHeaders | None = None,
    ) -> None:
        """A record of one of the five input topics, applied now."""
        decoded = self.decode_input(topic, value, headers)
        self.apply_input(topic, partition, offset, key, value, decoded)

    def decode_input(
        self, topic: str, value: bytes | None, headers: RecordHeaders | None = None
    ) -> Decoded:
        """Judge an input record before its turn: its event and event time (what the
        order of application needs), or why it is rejected. With `headers`, a
        `content-type: application/cloudevents+json` one demands a CloudEvents envelope
        (contract section 2.10); an envelope is recognised by its value either way."""
        structured = is_structured(headers) if headers else False
        try:
            return self.decoder.decode_at(
                topic,
                value if value is not None else b"",
                now_us=self.clock(),
                structured=structured,
            )
        except RejectedRecord as rej:
            return rej

    def apply_input(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        decoded: Decoded,
    ) -> None:
        """Apply a decoded input record: dead-letter, re-key or apply it."""
        started = perf_counter()
        raw = value if value is not None else b""
        if isinstance(decoded, RejectedRecord):
            self._reject(decoded, topic, partition, offset, key, raw)
        else:
            event, at = decoded
            cid = event.customer_id.encode("utf-8")
            source = f"{self._kind_of[topic]}/{partition}"
            if key != cid or partition != partition_for(cid, self.partitions):
                # The key is not trusted: re-key by the customer in the value.
                envelope = {
                    "k": "event",
                    "topic": topic,
                    "value": raw.decode("utf-8"),
                    "src": [source, offset],
                }
                self.send(self.topics.internal, cid, _dumps(envelope), None, None)
                self.outcomes[(topic, "rekeyed")] += 1
            else:
                self._apply(topic, cid, event, at, (source, offset), (source, offset))
        if self.metrics is not None:
            self.metrics.processing.observe(perf_counter() - started)

    def on_internal(self, partition: int, offset: int, key: bytes | None, value: bytes) -> None:
        """A record of the internal topic (see the module docstring)."""
        topic = self.topics.internal
        try:
            rec = json.loads(value)
            kind = rec["k"]
            here = (f"internal/{partition}", offset)
            if kind == "event":
                self._on_rekeyed(rec, partition, offset, key, _path(rec), here)
            elif kind == "link":
                link = ReferralLink(rec["referred"], rec["referrer"], int(rec["at"]), rec["id"])
                self._apply(topic, link.referred_id.encode("utf-8"), link, None, _path(rec), here)
            elif kind == "credit":
                credit = ReferralCredit(
                    rec["id"], rec["referrer"], Decimal(rec["amount"]), int(rec["at"])
                )
                self._apply(
                    topic, credit.referrer_id.encode("utf-8"), credit, None, _path(rec), here
                )
            elif kind == "sweep":
                after = rec.get("after")
                self.sweep_slice(
                    partition, int(rec["as_of"]), None if after is None else str(after)
                )
            else:
                raise ValueError(f"unknown internal record kind {kind!r}")
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            # Only this service writes the topic, so this is a bug, never input:
            # keep it (DLQ) and go on rather than stop the partition.
            log.error("malformed internal record at %s[%s]@%s: %r", topic, partition, offset, exc)
            rej = RejectedRecord("schema_violation", f"malformed internal record: {exc!r}")
            self._reject(rej, topic, partition, offset, key, value)

    def _on_rekeyed(
        self,
        rec: dict[str, Any],
        partition: int,
        offset: int,
        key: bytes | None,
        path: Position | None,
        here: Position,
    ) -> None:
        topic, raw = rec["topic"], rec["value"].encode("utf-8")
        try:
            event, at = self.decoder.decode_at(topic, raw, now_us=self.clock())
        except RejectedRecord as rej:  # e.g. the clock moved: judged again, as on arrival
            self._reject(rej, topic, partition, offset, key, raw)
            return
        cid = event.customer_id.encode("utf-8")
        if partition != partition_for(cid, self.partitions):
            raise ValueError("re-keyed record on the wrong partition (partition counts differ?)")
        self._apply(topic, cid, event, at, path, here)

    # ---- state -------------------------------------------------------------------------

    def state(self, cid: bytes) -> CustomerState:
        """The customer's state, to change: from the cache, else the table, else new."""
        cache = self.cache
        s = cache.get(cid)
        if s is not None:
            cache.move_to_end(cid)
            return s
        s = self._load(cid)
        if s is None:
            s = CustomerState(cid.decode("utf-8"))
        cache[cid] = s
        if len(cache) > self.cache_limit:
            old, old_state = cache.popitem(last=False)
            if old in self.dirty:  # its only copy: write it before letting it go
                self.dirty.discard(old)
                self.table[old] = codec.dumps(old_state)
        self._note_status(cid, s)
        return s

    def _load(self, cid: bytes) -> CustomerState | None:
        raw = self.table.get(cid)
        if raw is None:
            return None
        try:
            return codec.loads(raw)
        except StateFormatError:
            # Refuse to guess: a state this version cannot read stops the worker
            # rather than be overwritten with an empty one.
            log.critical("unreadable state for customer %r", cid)
            raise

    def _apply(
        self,
        topic: str,
        cid: bytes,
        record: Event | ReferralLink | ReferralCredit,
        at: int | None,
        path: Position | None,
        here: Position,
    ) -> None:
        """Apply a record that came down `path` (None: an internal record from before
        paths, de-duplicated by id only), consumed at `here`."""
        state = self.state(cid)
        again = path is None or path[1] <= state.positions.get(path[0], -1)
        if path is not None and again and not _remembered(state, record):
            # Delivered again after its id expired: applied already (see Positions).
            # Whether it forwarded went with the id, so nothing is forwarded again: a
            # forward is lost only if a crash dropped it while the state's changelog
            # record landed, in a span that also outlived the id.
            result = StepResult("duplicate")
        elif isinstance(record, (ReferralLink, ReferralCredit)):
            result = self.model.apply(state, record)
        else:
            result = self.model.apply_event(state, record, at)
        if result.forward is not None and result.outcome == "duplicate" and not again:
            # The same id at a new offset (an upstream re-send): the first one's offset
            # was committed only once its forward was delivered, or it comes again
            # itself. Forwarded again, the copy would reach the receiver down a new
            # position, and there only its id could stop it, which may have expired.
            result = StepResult("duplicate", result.alert)
        if result.outcome == "applied" and path is not None:
            state.positions[path[0]] = max(path[1], state.positions.get(path[0], -1))
        self.outcomes[(topic, result.outcome)] += 1
        if result.outcome == "duplicate" and state.recent_alerts:
            self._resend_alerts(cid, state, _record_id(record))
        if result.outcome == "applied":
            self._changed_state(cid, state)
            self._note_status(cid, state)
            if at is not None and self.metrics is not None:
                self.metrics.event_lag.observe(max(0.0, (self.clock() - at) / 1e6))
        elif result.outcome == "duplicate":
            # Written again although unchanged: after a crash the local store can hold
            # a state whose changelog record never left (the store is written first),
            # and the redelivered records that made it are all duplicates now. Without
            # this the changelog keeps the older state, and so does whichever worker
            # restores the partition from it next. Duplicates are rare outside crashes.
            self._changed_state(cid, state)
        self._emit(cid, state, result, _origin(path, here))

    def _resend_alerts(self, cid: bytes, state: CustomerState, record_id: str) -> None:
        """A redelivered record re-sends the alert it triggered: the state (with the
        record applied) may have reached the changelog before a crash while the alert
        did not reach its topic. Same alert_id, so consumers de-duplicate."""
        for kept in state.recent_alerts:
            if kept.trigger == record_id:
                alert = self.model.kept_alert(state, kept)
                self.tallies.alerts_resent[alert.kind] += 1
                self._send_alert(cid, alert)

    def _note_status(self, cid: bytes, state: CustomerState) -> None:
        if not state.has_own_events:
            return
        before = self._status_of.get(cid)
        if before != state.status:
            if before is not None:
                self._statuses[before] -= 1
            self._statuses[state.status] += 1
            self._status_of[cid] = state.status

    def _emit(self, cid: bytes, state: CustomerState, result: StepResult, here: Position) -> None:
        if result.alert is not None:
            self.alerts[result.alert.kind] += 1
            self._send_alert(cid, result.alert)
        if result.outcome in ("applied", "duplicate") and state.has_own_events:
            # Also after a duplicate: a redelivery after a crash re-sends the
            # snapshot the crash may have swallowed, so the compacted topic's latest
            # value per key always equals the table.
            self._snapshot(cid, state)
        fwd = result.forward
        if fwd is None:
            return
        if isinstance(fwd, ReferralLink):
            target = fwd.referred_id
            rec: dict[str, Any] = {
                "k": "link",
                "referred": fwd.referred_id,
                "referrer": fwd.referrer_id,
                "at": fwd.occurred_at,
                "id": fwd.event_id,
                "src": list(here),
            }
        else:
            target = fwd.referrer_id
            rec = {
                "k": "credit",
                "id": fwd.credit_id,
                "referrer": fwd.referrer_id,
                "amount": format(fwd.amount, "f"),  # plain notation, exact
                "at": fwd.occurred_at,
                "src": list(here),
            }
        self.send(self.topics.internal, target.encode("utf-8"), _dumps(rec), None, None)

    def _changed_state(self, cid: bytes, state: CustomerState) -> None:
        if self.coalesce:
            self.dirty.add(cid)
        else:
            self.table[cid] = codec.dumps(state)

    def _snapshot(self, cid: bytes, state: CustomerState) -> None:
        self._changed.add(cid)
        if self.coalesce:
            self.owed.add(cid)
        else:
            self._send_snapshot(cid, state)

    def flush(self) -> tuple[int, int]:
        """Write every changed state to the table, then send the latest snapshot of
        every customer that changed since the last flush: (states, snapshots)."""
        return self._write_states(), self._send_snapshots()

    def _write_states(self) -> int:
        dirty, self.dirty = self.dirty, set()
        cache = self.cache
        for cid in sorted(dirty):
            self.table[cid] = codec.dumps(cache[cid])  # dirty states never leave the cache
        return len(dirty)

    def _send_snapshots(self) -> int:
        owed, self.owed = self.owed, set()
        for cid in sorted(owed):
            state = self.cache.get(cid)
            if state is None:
                raw = self.table.get(cid)
                if raw is None:
                    continue
                state = codec.loads(raw)
            self._send_snapshot(cid, state)
        return len(owed)

    def _send_alert(self, cid: bytes, alert: Alert) -> None:
        wire = alert.to_wire()
        self.send(self.topics.alerts, cid, _dumps(wire), alert_headers(self.ce_source, wire), None)

    def _send_snapshot(self, cid: bytes, state: CustomerState) -> None:
        wire = self.model.snapshot_wire(state)
        value = _dumps(wire)
        # The applied positions only grow, so their sum tells a state that came back to
        # an earlier value from that earlier state (models.cloudevents.snapshot_id).
        revision = sum(state.positions.values())
        headers = snapshot_headers(self.ce_source, wire, value, revision)
        self.send(self.topics.snapshots, cid, value, headers, None)

    def _reject(
        self,
        rej: RejectedRecord,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        raw: bytes,
    ) -> None:
        self.outcomes[(topic, "rejected")] += 1
        self.rejections[(topic, rej.code)] += 1
        letter = dead_letter(
            rej,
            topic=topic,
            partition=partition,
            offset=offset,
            original=raw,
            received_at=iso(self.clock()) or "",
        )
        dlq_key = rej.customer_id.encode("utf-8") if rej.customer_id else key
        headers = record_headers(
            letter, source=self.ce_source, original=raw, customer_id=rej.customer_id
        )
        self.send(self.topics.dlq, dlq_key, _dumps(letter.to_wire()), headers, None)

    # ---- sweep -------------------------------------------------------------------------

    def sweep_partition(self, partition: int, as_of: int) -> int:
        """Re-evaluate every customer of one partition at `as_of` (spec section 4), in
        one go (replay-like callers and tests); how many."""
        return self._sweep(partition, as_of, self._keys_of(partition))

    def sweep_slice(self, partition: int, as_of: int, after: str | None) -> int:
        """One slice of a partition's sweep: the next `sweep_batch_customers` customers
        after `after` (None: from the first), then a continuation record for the rest,
        to the same internal partition, so other records run in between."""
        keys = self._sweep_keys.get(partition)
        if after is None or keys is None or keys[0] != as_of:
            keys = (as_of, self._keys_of(partition))  # listed once per sweep
            self._sweep_keys[partition] = keys
        listed = keys[1]
        start = 0 if after is None else bisect_right(listed, after.encode("utf-8"))
        batch = listed[start : start + self.settings.sweep_batch_customers]
        swept = self._sweep(partition, as_of, batch)
        if start + len(batch) < len(listed):
            last = batch[-1].decode("utf-8")
            rec = _dumps({"k": "sweep", "as_of": as_of, "after": last})
            self.send(self.topics.internal, None, rec, None, partition)
        else:
            self._sweep_keys.pop(partition, None)
        return swept

    def _sweep(self, partition: int, as_of: int, keys: Iterable[bytes]) -> int:
        swept = 0
        started = perf_counter()
        for cid in keys:
            state = self.state(cid)
            before = (state.as_of, state.status, state.below_since, state.day)
            result = self.model.sweep(state, as_of)
            if (state.as_of, state.status, state.below_since, state.day) != before:
                self._changed_state(cid, state)
                self._note_status(cid, state)
                if result.alert is not None:
                    self.alerts[result.alert.kind] += 1
                    self._send_alert(cid, result.alert)
                self._snapshot(cid, state)
            swept += 1
        if self.metrics is not None:
            self.metrics.sweep.observe(perf_counter() - started)
        return swept

    def _keys_of(self, partition: int) -> list[bytes]:
        keys = set(self.table.keys()) | set(self.cache)
        return sorted(k for k in keys if partition_for(k, self.partitions) == partition)

    def sweep_request(self, as_of: int) -> bytes:
        return _dumps({"k": "sweep", "as_of": as_of})

    def forget(self) -> None:
        """Partitions were revoked (their states may move): write and send what is
        owed, drop the cache."""
        self.flush()
        self.cache.clear()
        self._sweep_keys.clear()
        self._statuses.clear()
        self._status_of.clear()
        self._index.clear()
        self._changed.clear()
        self._indexed = False

    # ---- queries (streams/web.py) ------------------------------------------------------

    def reindex(self) -> None:
        """Partitions arrived (and their tables are recovered): the next query reads
        every stored customer again, the new ones included."""
        self._indexed = False

    def stored_state(self, cid: bytes) -> CustomerState | None:
        """The customer's state if it has events of its own; never creates one (an
        API probe for an unknown id must not grow the cache)."""
        state = self.cache.get(cid)
        if state is None:
            # Read, not cached: a list query reads every customer once and must not
            # push the stream's working set out of the cache.
            state = self._load(cid)
            if state is None:
                return None
        return state if state.has_own_events else None

    def snapshot_of(self, cid: bytes) -> dict[str, Any] | None:
        state = self.stored_state(cid)
        return None if state is None else self.model.snapshot_wire(state)

    def alerts_of(self, cid: bytes) -> list[dict[str, Any]] | None:
        """The customer's kept alerts, oldest first."""
        state = self.stored_state(cid)
        return None if state is None else self.model.recent_alerts_wire(state)

    async def query_index(self, chunk: int = 200) -> dict[bytes, IndexEntry]:
        """Every customer of this worker's partitions, brought up to date.

        Reads the changed customers `chunk` at a time and lets the agents run between
        chunks: the first query after a start reads every stored customer, which must
        not stall the stream. A customer changed meanwhile is marked again and re-read
        before this returns, so the answer is as of its return."""
        if not self._indexed:
            # First query since start or a rebalance: every stored customer once.
            self._changed.update(self.table.keys())
            self._indexed = True
        changed = self._changed
        while changed:
            for _ in range(min(chunk, len(changed))):
                cid = changed.pop()
                state = self.stored_state(cid)
                if state is None:
                    self._index.pop(cid, None)
                else:
                    self._note_status(cid, state)  # the status gauge learns of it too
                    row = row_of(self.model.snapshot_wire(state))
                    self._index[cid] = IndexEntry(row, self.model.recent_alerts_wire(state))
            if changed:
                await asyncio.sleep(0)
        return self._index
