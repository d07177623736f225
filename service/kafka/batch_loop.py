"""A consumer-group member's loop: consume a batch → the handler decides what it produces →
publish → commit through the commit window. The stream processor and the counter owner are each
one `BatchLoop` with their own `BatchHandler`; this module knows nothing of events or counters.

- Connect with retry (connection.py); the handler prepares (topics, partitioning) before the
  loop subscribes.
- Backpressure: up to `max_in_flight_batches` batches wait for their acks in the window; when it
  is full the loop waits for the oldest and, if that takes long, pauses its partitions (a
  zero-timeout poll keeps the member alive meanwhile), so nothing is buffered without bound.
- Delivery is the commit window's (commit_window.py): at_least_once commits a batch's offsets once
  its outputs were acknowledged; exactly_once (transactions.py) produces each input partition's
  outputs and offsets in one transaction, so the loop hands it one partition's records at a time.
- A produce failure stops committing; the window settles, the consumer seeks back to the last
  committed offsets (the handler hears which partitions: `rewound`) and, after a backoff, the
  records are processed again.
- Rebalances: batches of revoked partitions are settled (committed) before the rebalance goes on;
  the window, then the handler, hear of assignments (under the loop's lock: no batch runs
  meanwhile) and revokes.
- Stop: the fetch in progress is abandoned, the window drains within `drain_timeout_seconds`,
  and the member leaves the group.
- Readiness: ready while connected, in the group, the broker answers (a metadata probe every
  `broker_probe_interval_seconds`) and no failure is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from service.kafka.commit_window import AtLeastOnceWindow, CommitWindow
from service.kafka.connection import Clients, connect, sleep_unless, stop_quietly
from service.kafka.publisher import Outbox
from service.kafka.records import Batch
from service.kafka.transactions import TransactionalWindow
from service.readiness import ReadinessPart
from service.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class BatchHandler(Protocol):
    """The domain side of a loop."""

    async def prepare(self, clients: Clients) -> None:
        """Once connected, before subscribing (create topics, check partitioning)."""

    def accepts(self, tp: TopicPartition) -> bool:
        """False while a partition cannot be processed yet: its records are fetched again."""

    def handle(self, batch: Batch) -> Outbox | Awaitable[Outbox]:
        """What the batch produces. A record that cannot be processed is a dead letter in it."""

    async def assigned(self, partitions: set[TopicPartition]) -> None: ...

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """After the batches of `partitions` settled."""

    async def rewound(self, partitions: set[TopicPartition]) -> None:
        """`partitions` were sought back to their last commit: their records come again."""


class LoopObserver:
    """What the loop reports beyond readiness; the stream turns it into metrics, others ignore it."""

    def in_flight(self, batches: int) -> None: ...
    def committed(self, ok: bool) -> None: ...
    def produce_failed(self) -> None: ...
    def assigned(self, partitions: set[TopicPartition]) -> None: ...
    def revoked(self, partitions: set[TopicPartition]) -> None: ...
    def lag(self, tp: TopicPartition, records: int) -> None: ...


class BatchLoop:
    def __init__(
        self,
        settings: Settings,
        handler: BatchHandler,
        *,
        name: str,
        topic: str,
        group_id: str,
        readiness: ReadinessPart,
        observer: LoopObserver | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.name = name
        self.topic = topic
        self.group_id = group_id
        self._readiness = readiness
        self._observer = observer or LoopObserver()
        self._stopping = asyncio.Event()
        self._clients: Clients | None = None
        self._window: CommitWindow | None = None
        self._lock = asyncio.Lock()  # one of: a batch, a rebalance callback, a recovery
        self._joined = False
        self._broker_ok = False
        self._backoff_seconds = 0.0
        self._consumed_to: dict[TopicPartition, int] = {}  # for the lag

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def sleep_unless_stopping(self, seconds: float) -> None:
        await sleep_unless(self._stopping, seconds)

    async def run(self) -> None:
        """Until request_stop(): connect (retrying), process, drain. Fatal errors propagate."""
        clients = await connect(self.settings, self.group_id, self._stopping, name=self.name,
                                prepare=self.handler.prepare)
        if clients is None:
            return
        self._clients = clients
        window = self._commit_window(clients)
        self._window = window
        clients.consumer.subscribe([self.topic], listener=_Listener(self))
        self._broker_ok = True
        log.info(f"{self.name} connected", extra={"topic": self.topic, "group": self.group_id})
        window.start()
        prober = asyncio.create_task(self._probe_loop(), name=f"redline-{self.name}-probe")
        try:
            await self._consume_loop(window, clients)
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
            try:
                await self._drain(window)
            finally:
                self._clients = None
                await stop_quietly(clients.consumer, clients.producer)
                self._update_readiness()

    def _commit_window(self, clients: Clients) -> CommitWindow:
        settings = self.settings
        if settings.exactly_once:
            return TransactionalWindow(clients.consumer, settings, self._stopping, self, group_id=self.group_id)
        return AtLeastOnceWindow(
            clients.consumer, clients.publisher, self._stopping, self, dead_letter_topic=settings.dlq_topic,
            max_batches=settings.max_in_flight_batches, retry_backoff_max_seconds=settings.retry_backoff_max_seconds,
        )

    # --- the loop

    async def _consume_loop(self, window: CommitWindow, clients: Clients) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await self._consume_until_stopped(window, clients, stop)
        finally:
            stop.cancel()

    async def _consume_until_stopped(self, window: CommitWindow, clients: Clients, stop: asyncio.Future[Any]) -> None:
        consumer = clients.consumer
        settings = self.settings
        while not self.stopping:
            window.check()
            if window.failure is not None:
                await self._recover(window)
                continue
            if window.full:
                await self._wait_for_room(window, clients, stop)
                continue
            await window.realign()
            paused = consumer.paused()
            if paused:
                consumer.resume(*paused)
            try:
                batch = await self._unless_stopped(
                    consumer.getmany(timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_records),
                    stop,
                )
            except KafkaError as exc:  # coordinator and fetch errors aiokafka hands up: back off
                log.warning("consume failed", extra={"loop": self.name, "error": repr(exc)})
                self.broker_reachable(False)
                await sleep_unless(self._stopping, 1.0)
                continue
            if not batch:
                continue
            async with self._lock:
                # A rebalance may have run while this batch waited for the lock.
                assigned = consumer.assignment()
                batch = {tp: records for tp, records in batch.items() if tp in assigned}
                # A failure that came while this batch was fetched is handled at the top of the
                # loop first; a partition the window or the handler cannot take yet waits. Their
                # records are fetched again (the window may seek further back): exactly_once seeks
                # back only a failed partition, so the others' records in a dropped batch were lost.
                failed = window.failure is not None
                held = [tp for tp in batch if failed or not window.accepts(tp) or not self.handler.accepts(tp)]
                _fetch_again(consumer, {tp: batch.pop(tp) for tp in held})
                if batch:
                    await self._observe_lag(batch)
                    units = [{tp: records} for tp, records in batch.items()] if window.per_partition else [batch]
                    for unit in units:
                        handled = self.handler.handle(unit)
                        # A heavy batch is handled in slices that give the loop back between them
                        # (heartbeats, probes, acks go on): the handler then returns an awaitable.
                        outbox = handled if isinstance(handled, Outbox) else await handled
                        await window.submit(unit, outbox)
            # getmany answers from its prefetch without suspending: let the committer commit
            # (and the producer send) before the next batch, not after the window fills.
            await asyncio.sleep(0)

    async def _unless_stopped(self, call: Awaitable[T], stop: asyncio.Future[Any]) -> T | None:
        """`call`'s result, or None when a stop is requested first (the call is then cancelled).

        aiokafka's getmany waits without a bound while a group reassignment is in progress
        (Fetcher.fetched_records → wait_for_assignment); that must not hold up a drain. Cancelling
        it loses nothing: records it fetched and did not return are neither processed nor committed.
        """
        task = asyncio.ensure_future(call)
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, KafkaError):
            await task
        return None

    async def _wait_for_room(self, window: CommitWindow, clients: Clients, stop: asyncio.Future[Any]) -> None:
        """Backpressure: wait for the oldest batch; if it takes long, stop fetching meanwhile."""
        if await window.wait_for_room(self.settings.poll_timeout_ms / 1000):
            return
        consumer = clients.consumer
        assignment = consumer.assignment()
        if assignment:
            consumer.pause(*assignment)
        # A zero-timeout poll keeps the member alive (max_poll_interval) without fetching. It
        # returns nothing of the paused partitions; of partitions assigned meanwhile (a rebalance
        # while it waited) it may: those are fetched again, not dropped.
        with contextlib.suppress(KafkaError):
            fetched = await self._unless_stopped(consumer.getmany(timeout_ms=0), stop)
            assigned = consumer.assignment()
            _fetch_again(consumer, {tp: records for tp, records in (fetched or {}).items() if tp in assigned})

    async def _recover(self, window: CommitWindow) -> None:
        """After a produce failure: let the window settle, seek back, back off, go on."""
        async with self._lock:
            rewound = await window.recover()
            if rewound is None:
                return  # asked to stop before the window settled
            await self.handler.rewound(rewound)
            self._backoff_seconds = min(self.settings.retry_backoff_max_seconds, max(0.5, self._backoff_seconds * 2))
            log.info("re-processing from the last committed offsets",
                     extra={"loop": self.name, "retry_in_seconds": self._backoff_seconds})
            await sleep_unless(self._stopping, self._backoff_seconds)

    async def _drain(self, window: CommitWindow) -> None:
        started = time.monotonic()
        drained = await window.close(self.settings.drain_timeout_seconds)
        if not drained:
            log.warning("drain timed out; uncommitted records will be processed again",
                        extra={"loop": self.name, "batches": window.in_flight})
        log.info(f"{self.name} drained", extra={"seconds": round(time.monotonic() - started, 3), "complete": drained})

    # --- rebalance (called by aiokafka's coordinator task)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            window = self._window
            if window is not None and not await window.settle(self.settings.drain_timeout_seconds):
                log.warning("revoke: in-flight batches did not settle in time",
                            extra={"loop": self.name, "batches": window.in_flight})
            if window is not None:
                await window.revoked(revoked)
            for tp in revoked:
                self._consumed_to.pop(tp, None)
            self._observer.revoked(revoked)
            await self.handler.revoked(revoked)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:  # a batch fetched meanwhile waits for the handler
            # exactly_once: the window's producers start (fencing the partitions' previous owners)
            # before the handler reads any state of these partitions (the counter changelog).
            if self._window is not None:
                await self._window.assigned(assigned)
            self._joined = True
            self._observer.assigned(assigned)
            self._update_readiness()
            await self.handler.assigned(assigned)

    # --- what the window reports (WindowEvents)

    def committed(self, ok: bool) -> None:
        self._observer.committed(ok)

    def produce_failed(self) -> None:
        self._observer.produce_failed()

    def broker_reachable(self, ok: bool) -> None:
        if ok != self._broker_ok:
            self._broker_ok = ok
            self._update_readiness()

    def failure_changed(self) -> None:
        self._update_readiness()

    def in_flight(self, batches: int) -> None:
        self._observer.in_flight(batches)

    # --- health

    def _update_readiness(self) -> None:
        window = self._window
        self._readiness.set(self._clients is not None and self._joined and self._broker_ok
                            and (window is None or window.failure is None))

    async def _probe_loop(self) -> None:
        """The broker is reachable if a metadata request answers within the probe interval."""
        interval = self.settings.broker_probe_interval_seconds
        while True:
            await asyncio.sleep(interval)
            clients = self._clients
            if clients is None:
                continue
            try:
                await asyncio.wait_for(clients.consumer.topics(), interval)
                ok = True
            except (TimeoutError, KafkaError, OSError):
                ok = False
            if not ok and self._broker_ok:
                log.warning("broker unreachable", extra={"loop": self.name})
            self.broker_reachable(ok)
            self._observe_idle_lag(clients)

    async def _observe_lag(self, batch: Batch) -> None:
        """Lag = high watermark − position: transaction markers take offsets that no record has, so
        `last offset + 1` would stay behind the high watermark after every transaction."""
        assert self._clients is not None
        consumer = self._clients.consumer
        for tp in batch:
            consumed = self._consumed_to[tp] = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self._observer.lag(tp, max(0, highwater - consumed))

    def _observe_idle_lag(self, clients: Clients) -> None:
        for tp, consumed in self._consumed_to.items():
            highwater = clients.consumer.highwater(tp)
            if highwater is not None:
                self._observer.lag(tp, max(0, highwater - consumed))


def _fetch_again(consumer: AIOKafkaConsumer, batch: Batch) -> None:
    """Records fetched and not processed: the consumer's position moved past them, and nothing else
    would seek them back."""
    for tp, records in batch.items():
        consumer.seek(tp, records[0].offset)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, loop: BatchLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._loop.on_assigned(assigned)
