"""Every part of Faust the service uses that is not Faust's public API, in one place.

Each has no public equivalent; each is pinned by tests/agents/test_faust_private.py,
and an untested faust-streaming version logs a warning at import. After upgrading
faust-streaming or aiokafka, run `make test`.

- `CURRENT_EVENT` (`faust.streams._current_event`): Faust's table takes the partition
  of a write from the record being processed; the commit step writes outside any
  record (streams/table_writes.py).
- `aiokafka_producer(app)` (`app.producer._producer`): Faust's aiokafka producer, for
  `send_batch` of whole record batches (streams/record_batches.py) and its client's
  metadata (streams/web.py).
- `deliver_fetched(consumer, tps)` (`Consumer._buffered_partitions`): Faust's
  `pause_partitions` stops fetching a partition but also drops the records of it that
  the fetch being handed over still holds, while the client's position has moved past
  them; a partition in `_buffered_partitions` (Faust's own flow control for full
  stream buffers) has those delivered instead. So the memory bound of the order of
  application (streams/ordering.py) pauses with both, and nothing is lost.
- `own_acks(app)` (an override of the aiokafka driver's `Consumer.ack`): with manual
  acks (`stream.noack()`) Faust's stream still acknowledges the records it skips, of
  an older consumer generation or while flow control is off (around rebalances),
  without handing them over. Such an ack lets Faust commit past a record no agent
  took. The consumer here takes acks only inside `own_acks` (streams/acks.py) and
  counts the others (`skipped_acks`): a skipped record is read again (Faust seeks back
  after a rebalance; models/contiguity.py has the worker seek back otherwise).
- The same consumer's `_new_offset(tp)` (what Faust commits for a partition): Faust's
  own takes the first run of consecutive acked offsets, merges in offsets its fetch
  loop counted as holding no record (`_gap`, which false gaps after a seek back fill
  with records not yet applied), lets one unacked offset at the committed position
  pass, and, once those merged offsets are acked for real, keeps duplicates that
  split every run: seen here, commits crawling a few offsets per second behind a
  caught-up worker. The acks here are in offset order with none left out
  (streams/acks.py, models/contiguity.py), so the offset to commit is the highest
  acked + 1.
- `new_transport(app)` (`App._new_transport`, the aiokafka driver's
  `Consumer._new_consumer_thread` and `AIOKafkaConsumerThread._create_worker_consumer`,
  aiokafka's `AIOKafkaConsumer._fetch_max_wait_ms`): Faust builds its consumer with
  `fetch_max_wait_ms=1500` and no setting for it. Kafka answers a connection's
  requests in order, so each offset lookup waits behind the parked fetch; the value
  is replaced before the consumer starts (aiokafka reads it in `start()`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import faust
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)

TESTED: Final = ("0.15.",)  # faust-streaming versions these parts were checked against
if not faust.__version__.startswith(TESTED):
    log.warning(
        "faust-streaming %s is untested with profitwatch (tested: %s): run make test",
        faust.__version__,
        ", ".join(f"{v}x" for v in TESTED),
    )

CURRENT_EVENT: Final = _current_event


def aiokafka_producer(app: Any) -> Any:
    """Faust's aiokafka producer (it exists once Faust's producer started)."""
    return app.producer._producer


def deliver_fetched(consumer: Any, tps: Iterable[Any]) -> None:
    """Have Faust deliver what it already fetched of these (paused) partitions."""
    consumer._buffered_partitions.update(tps)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    acks_open = False  # True only inside `own_acks`
    skipped_acks = 0  # acks refused: Faust's own, of records no agent took

    def ack(self, message: Any) -> bool:
        if not self.acks_open:
            self.skipped_acks += 1
            return False
        return bool(super().ack(message))

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        top = max(acked)
        acked.clear()
        self._acked_index[tp].clear()
        self._gap.pop(tp, None)
        return int(top) + 1

    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def new_transport(app: Any) -> Any:
    """Faust's aiokafka transport for the app's consumer: it takes only `own_acks`, and
    its fetches wait at most ``app.fetch_max_wait_ms`` on the broker (Faust's own when
    None)."""
    return _Transport(app.conf.broker_consumer, app, loop=app.loop)


@contextmanager
def own_acks(app: Any) -> Iterator[None]:
    """The consumer takes acknowledgements inside this block only (no await in it)."""
    consumer = app.consumer
    if not isinstance(consumer, _Consumer):  # another transport (tests): takes all
        yield
        return
    consumer.acks_open = True
    try:
        yield
    finally:
        consumer.acks_open = False


def skipped_acks(app: Any) -> int:
    """Acknowledgements the consumer refused so far."""
    return getattr(app.consumer, "skipped_acks", 0)
