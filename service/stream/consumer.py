"""The stream loop: consume a batch → classify → produce verdicts and dead letters → commit.

Delivery is at-least-once and in order per partition (docs/stream.md):

* Each `getmany` result becomes one *unit*: its classification, its produce futures and the next
  offset per partition. Up to `max_in_flight_batches` units are in flight, classifying included;
  when the window is full the loop waits and then pauses its partitions, so nothing is buffered
  without bound.
* A unit is classified by the classify worker process (worker_client.py, worker_process.py), or in this process when
  the worker has `_WORKER_QUEUE_BATCHES` queued already (at most one batch in `_INLINE_EVERY`), or
  when no worker serves the runtime's pack. A sender task sends each unit's outputs as soon as it
  is classified, strictly in the order consumed, so fetching batch k+1 and producing batch k-1
  overlap with classifying batch k. A worker that dies fails its units: handled like a produce
  failure (below).
* A committer task takes units strictly in order; a unit's offsets are committed only after every
  record it produced (verdicts and dead letters) was acknowledged by the broker.
* A produce (or classify worker) failure stops sending and committing, lets the remaining units
  settle, seeks every partition back to its last committed offset and retries after a backoff: the
  records are processed again (duplicates possible, never a gap).
* Revoked partitions are drained and committed before the rebalance goes on; stop() drains
  within `drain_timeout_seconds`, commits, and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from service import metrics
from service.counters.routing import send_counter_requests
from service.events import RulesetRef
from service.runtime import Runtime
from service.settings import Settings
from service.stream.clients import retry_delay, stop_quietly
from service.stream.dead_letters import DeadLetter
from service.stream.kafka_config import consumer_options, producer_options
from service.stream.pipeline import Processed, classify_decoded, decode_records, ruleset_headers
from service.stream.publisher import BatchPublisher
from service.stream.topics import ensure_topics
from service.stream.worker_client import ClassifyWorkers, effective_cpu_count, worker_enabled
from service.stream.worker_process import Classified, WorkerError

log = logging.getLogger(__name__)
T = TypeVar("T")

# With the classify worker on, this process classifies a batch itself only when the worker already
# has this many queued, and at most one batch in `_INLINE_EVERY`: it also does all the Kafka I/O
# (~9 µs per event), and one in three balanced the two processes' CPU (docs/benchmarks.md).
_WORKER_QUEUE_BATCHES = 2
_INLINE_EVERY = 3


@dataclass(slots=True)
class _Unit:
    offsets: dict[TopicPartition, int]  # next offset to commit per partition
    classified: asyncio.Future[Classified]
    futures: list[asyncio.Future[Any]] = field(default_factory=list)  # produce acks
    sent_at: list[float] = field(default_factory=list)
    sent: asyncio.Event = field(default_factory=asyncio.Event)  # futures is complete (or failed)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, processor: StreamProcessor) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._processor.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._processor.on_assigned(assigned)


class StreamProcessor:
    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._publisher: BatchPublisher | None = None
        self._window: deque[_Unit] = deque()
        self._unsent: deque[_Unit] = deque()  # the tail of the window the sender has not sent yet
        self._unit_added = asyncio.Event()
        self._unit_submitted = asyncio.Event()
        self._workers: ClassifyWorkers | None = None
        self._since_inline = 0  # batches sent to the worker since this process classified one
        self._unit_done = asyncio.Event()
        self._lock = asyncio.Lock()  # one of: building a unit, handling a revoke, recovering
        self._failure: BaseException | None = None
        self._resume: dict[TopicPartition, int] = {}  # where to seek back to after a failure
        self._consumed_to: dict[TopicPartition, int] = {}  # for the lag gauge
        self._joined = False
        self._broker_ok = False
        self._backoff_seconds = 0.0

    # --- public

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Until request_stop(): connect (retrying), process, drain. Fatal errors propagate."""
        use_worker = worker_enabled(self.settings)
        log.info("stream classification", extra={"worker": use_worker, "cpus": effective_cpu_count(),
                                                 "setting": self.settings.stream_classify_worker})
        if use_worker:  # it compiles its pack while the consumer connects and joins
            self._workers = ClassifyWorkers(self.settings, self.runtime.engine.ruleset.digest)
            self._workers.open()
        try:
            await self._run_connected()
        finally:
            if self._workers is not None:
                await self._workers.close()

    async def _run_connected(self) -> None:
        if not await self._connect():
            return
        committer = asyncio.create_task(self._commit_loop(), name="redline-committer")
        sender = asyncio.create_task(self._send_loop(), name="redline-sender")
        prober = asyncio.create_task(self._probe_loop(), name="redline-broker-probe")
        try:
            await self._consume_loop(committer, sender)
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
            try:
                await self._drain(committer, sender)
            finally:
                await self._close()

    # --- connection

    async def _connect(self) -> bool:
        settings = self.settings
        attempt = 0
        while not self.stopping:
            try:
                if settings.create_topics:
                    await ensure_topics(settings)
                producer = AIOKafkaProducer(**producer_options(settings))
                await producer.start()
                self._producer, self._publisher = producer, BatchPublisher(producer)
                consumer = AIOKafkaConsumer(**consumer_options(settings))
                await consumer.start()
                self._consumer = consumer
                consumer.subscribe([settings.input_topic], listener=_Listener(self))
                self._broker_ok = True
                log.info("stream connected", extra={"input": settings.input_topic,
                                                    "output": settings.output_topic,
                                                    "group": settings.group_id})
                return True
            except (KafkaError, OSError) as exc:
                await self._close()
                attempt += 1
                delay = retry_delay(settings, attempt)
                log.warning("broker not reachable, retrying",
                            extra={"error": repr(exc), "retry_in_seconds": delay, "attempt": attempt})
                await self._sleep_unless_stopping(delay)
        return False

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        self._publisher = None
        await stop_quietly(consumer, producer)
        self._set_ready()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- the loop

    async def _consume_loop(self, committer: asyncio.Task[None], sender: asyncio.Task[None]) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await self._consume_until_stopped(committer, sender, stop)
        finally:
            stop.cancel()

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

    async def _consume_until_stopped(
        self, committer: asyncio.Task[None], sender: asyncio.Task[None], stop: asyncio.Future[Any]
    ) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        settings = self.settings
        while not self.stopping:
            for task in (committer, sender):
                if task.done():
                    task.result()  # re-raise what killed it
                    raise RuntimeError(f"{task.get_name()} stopped")
            if self._failure is not None:
                await self._recover()
                continue
            if len(self._window) >= settings.max_in_flight_batches:
                await self._wait_for_room(stop)
                continue
            paused = consumer.paused()
            if paused:
                consumer.resume(*paused)
            try:
                batch = await self._unless_stopped(
                    consumer.getmany(timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_records),
                    stop,
                )
            except KafkaError as exc:  # coordinator and fetch errors aiokafka hands up: back off
                log.warning("consume failed", extra={"error": repr(exc)})
                self._broker_ok = False
                self._set_ready()
                await self._sleep_unless_stopping(1.0)
                continue
            if not batch:
                continue
            async with self._lock:
                # A rebalance may have run while this batch waited for the lock.
                assigned = consumer.assignment()
                batch = {tp: records for tp, records in batch.items() if tp in assigned}
                if batch and self._failure is None:
                    self._submit(batch)
                    self._observe_lag(batch)
            # getmany answers from its prefetch without suspending: let the sender produce what is
            # classified (and the committer commit) before the next batch, not after the window fills.
            await asyncio.sleep(0)

    async def _wait_for_room(self, stop: asyncio.Future[Any]) -> None:
        """Backpressure: wait for the oldest unit; if it takes long, stop fetching meanwhile."""
        assert self._consumer is not None
        self._unit_done.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._unit_done.wait(), self.settings.poll_timeout_ms / 1000)
            return
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(*assignment)
        # A zero-timeout poll keeps the member alive (max_poll_interval) without fetching.
        with contextlib.suppress(KafkaError):
            await self._unless_stopped(self._consumer.getmany(timeout_ms=0), stop)

    def _submit(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Start classifying a batch and append its unit to the window (the sender sends it)."""
        for tp, tp_records in batch.items():  # before anything is sent: a failure seeks back here
            self._resume.setdefault(tp, tp_records[0].offset)
        records = list(chain.from_iterable(batch.values()))
        metrics.events_consumed_total.inc(len(records))
        unit = _Unit(
            offsets={tp: tp_records[-1].offset + 1 for tp, tp_records in batch.items()},
            classified=self._classify(records),
        )
        self._window.append(unit)
        self._unsent.append(unit)
        metrics.stream_in_flight_batches.set(len(self._window))
        self._unit_added.set()
        self._unit_submitted.set()

    def _classify(self, records: list[Any]) -> asyncio.Future[Classified]:
        """In the worker when one serves the runtime's pack, else here with the runtime's engine:
        either way one pack decides the batch, the one the runtime serves at that moment."""
        workers = self._workers
        if workers is not None:
            workers.sync(self.runtime.engine.ruleset.digest)
            worker = workers.current()
            # A worker with a queue already has its next batches: this process, which would only
            # wait for it, classifies this one itself (with the same pack), now and then.
            if worker is not None and (worker.in_flight < _WORKER_QUEUE_BATCHES
                                       or self._since_inline < _INLINE_EVERY - 1):
                self._since_inline += 1
                return worker.submit(records)
            self._since_inline = 0
        future: asyncio.Future[Classified] = asyncio.get_running_loop().create_future()
        future.set_result(self._classify_here(records))
        return future

    def _classify_here(self, records: list[Any]) -> Classified:
        settings = self.settings
        engine = self.runtime.engine  # read at the moment of classifying: reloads swap it
        decoded = decode_records(
            records, max_record_bytes=settings.max_record_bytes,
            dead_letter_max_value_bytes=settings.dead_letter_max_value_bytes,
        )
        started = time.perf_counter()
        processed = classify_decoded(
            engine, decoded, datetime.now(UTC),
            dead_letter_max_value_bytes=settings.dead_letter_max_value_bytes,
        )
        seconds = time.perf_counter() - started
        return Classified(processed, engine.ruleset, seconds)

    async def _send_loop(self) -> None:
        """Send each unit's outputs once it is classified, strictly in the order consumed."""
        while True:
            while not self._unsent:
                self._unit_submitted.clear()
                await self._unit_submitted.wait()
            unit = self._unsent[0]
            try:
                classified = await unit.classified
                if self._failure is None:  # after a failure everything from the last commit is redone
                    self._count(classified)
                    await self._send_processed(classified.processed, classified.ruleset, unit)
            except WorkerError as exc:
                self._fail(exc, "classify worker failed; re-processing from the last commit")
            except KafkaError as exc:  # no metadata or no room in time: the broker is away
                metrics.stream_produce_failures_total.inc()
                self._fail(exc, "produce failed; re-processing from the last commit")
            finally:
                self._unsent.popleft()
                unit.sent.set()

    @staticmethod
    def _count(classified: Classified) -> None:
        # Engine time per event, measured where the batch was classified (this process or the
        # worker): the same definition either way.
        tally = classified.processed.tally
        if tally.total:
            metrics.classify_duration_seconds.labels("stream").observe(classified.classify_seconds / tally.total)
            metrics.record_counts(tally, "stream")

    async def _send_processed(self, processed: Processed, ruleset: RulesetRef, unit: _Unit) -> None:
        """Send a batch's outputs (verdicts, dead letters) and add their futures to `unit`."""
        assert self._publisher is not None
        publisher = self._publisher
        # Verdicts: grouped by output partition, each group in input order.
        topic = self.settings.output_topic
        router = await publisher.key_router(topic)
        headers = ruleset_headers(ruleset)
        groups: dict[int, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]] = {}
        for record in processed.verdict_records:
            partition = publisher.partition_for(topic, record.key, router)
            groups.setdefault(partition, []).append((record.key, record.value, headers))
        unit.sent_at = [record.sent_at for record in processed.verdict_records]
        for partition, items in groups.items():
            unit.futures += await publisher.send(topic, partition, items)
        if processed.dead_letters:
            unit.futures += await self._send_dead_letters(processed.dead_letters)
        if processed.counter_requests:  # their verdicts come from the counters' owners
            unit.futures += await send_counter_requests(
                publisher, self.settings.counter_requests_topic, processed.counter_requests
            )

    def _fail(self, error: BaseException, message: str) -> None:
        if self._failure is None:
            log.warning(message, extra={"error": repr(error)})
            self._failure = error
            self._set_ready()

    async def _send_dead_letters(self, letters: Iterable[DeadLetter]) -> list[asyncio.Future[Any]]:
        assert self._publisher is not None
        topic = self.settings.dlq_topic
        partitions = await self._publisher.partitions(topic)
        reasons: Counter[str] = Counter()
        groups: dict[int, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]] = {}
        for letter in letters:
            reasons[letter.reason] += 1
            # The source partition picks the DLQ partition: a partition's dead letters stay in order.
            partition = partitions[letter.source_partition % len(partitions)]
            groups.setdefault(partition, []).append((letter.key, letter.value, letter.headers))
        for reason, count in reasons.items():
            metrics.events_dead_lettered_total.labels(reason).inc(count)
        futures: list[asyncio.Future[Any]] = []
        for partition, items in groups.items():
            futures += await self._publisher.send(topic, partition, items)
        return futures

    # --- commits

    async def _commit_loop(self) -> None:
        """Settle units in order; commit each one whose records were all acknowledged."""
        while True:
            while not self._window:
                self._unit_added.clear()
                await self._unit_added.wait()
            unit = self._window[0]
            await unit.sent.wait()
            results = await asyncio.gather(*unit.futures, return_exceptions=True)
            error = next((r for r in results if isinstance(r, BaseException)), None)
            if isinstance(error, asyncio.CancelledError):
                raise error
            if error is not None and self._failure is None:
                metrics.stream_produce_failures_total.inc()
                self._fail(error, "produce failed; re-processing from the last commit")
            if self._failure is None:
                await self._commit(unit)
            self._window.popleft()
            metrics.stream_in_flight_batches.set(len(self._window))
            self._unit_done.set()

    async def _commit(self, unit: _Unit) -> None:
        assert self._consumer is not None
        metrics.observe_end_to_end_lags(unit.sent_at, time.time())
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in unit.offsets.items() if tp in assigned}
        attempt = 0
        while offsets:
            try:
                await self._consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group moved on without us: the new owner re-processes from its last commit.
                metrics.stream_commits_total.labels("failure").inc()
                log.warning("commit refused after a rebalance", extra={"error": repr(exc)})
                return
            except KafkaError as exc:
                # Retriable (coordinator moving, broker away): retry, holding the window full
                # so that the consumer pauses instead of racing ahead of its commits.
                metrics.stream_commits_total.labels("failure").inc()
                attempt += 1
                self._broker_ok = False
                self._set_ready()
                if self.stopping and attempt > 3:
                    log.warning("commit failed while stopping", extra={"error": repr(exc)})
                    return
                await asyncio.sleep(min(self.settings.retry_backoff_max_seconds, 0.2 * 2 ** min(attempt, 6)))
                assigned = self._consumer.assignment()
                offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
                continue
            metrics.stream_commits_total.labels("success").inc()
            self._resume.update(offsets)
            if not self._broker_ok:
                self._broker_ok = True
                self._set_ready()
            return

    async def _settle(self, limit_seconds: float | None) -> bool:
        """Wait until every unit in the window was committed or discarded."""
        deadline = None if limit_seconds is None else time.monotonic() + limit_seconds
        while self._window:
            self._unit_done.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unit_done.wait(), remaining)
        return True

    async def _recover(self) -> None:
        """After a produce failure: let the window settle, seek back, back off, go on."""
        assert self._consumer is not None
        async with self._lock:
            # Every future ends (acked, failed, or expired by aiokafka); a commit may hang while
            # the broker is away, so look up now and then whether we are asked to stop.
            while not await self._settle(1.0):
                if self.stopping:
                    return
            assignment = self._consumer.assignment()
            for tp, offset in self._resume.items():
                if tp in assignment:
                    self._consumer.seek(tp, offset)
            self._backoff_seconds = min(self.settings.retry_backoff_max_seconds,
                                        max(0.5, self._backoff_seconds * 2))
            log.info("re-processing from the last committed offsets",
                     extra={"partitions": len(self._resume), "retry_in_seconds": self._backoff_seconds})
            await self._sleep_unless_stopping(self._backoff_seconds)
            self._failure = None
            self._set_ready()

    async def _drain(self, committer: asyncio.Task[None], sender: asyncio.Task[None]) -> None:
        started = time.monotonic()
        drained = committer.done() or sender.done() or await self._settle(self.settings.drain_timeout_seconds)
        if not drained:
            log.warning("drain timed out; uncommitted records will be processed again",
                        extra={"batches": len(self._window)})
        sender.cancel()
        committer.cancel()
        # A task that failed already had its error raised by the consume loop: only end them here.
        await asyncio.gather(sender, committer, return_exceptions=True)
        log.info("stream drained", extra={"seconds": round(time.monotonic() - started, 3),
                                          "complete": drained})

    # --- rebalance (called by aiokafka's coordinator task)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            done = await self._settle(self.settings.drain_timeout_seconds)
            if not done:
                log.warning("revoke: in-flight batches did not settle in time",
                            extra={"batches": len(self._window)})
        for tp in revoked:
            self._resume.pop(tp, None)
            self._consumed_to.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.stream_consumer_lag_records.remove(str(tp.partition))
        log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._joined = True
        metrics.stream_assigned_partitions.set(len(assigned))
        self._set_ready()
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})

    # --- health

    def _set_ready(self) -> None:
        ready = (self._consumer is not None and self._joined and self._broker_ok
                 and self._failure is None)
        if ready != self.runtime.stream_ready:
            self.runtime.stream_ready = ready
            log.info("stream readiness changed", extra={"ready": ready})

    async def _probe_loop(self) -> None:
        """The broker is reachable if a metadata request answers within the probe interval."""
        interval = self.settings.broker_probe_interval_seconds
        while True:
            await asyncio.sleep(interval)
            consumer = self._consumer
            if consumer is None:
                continue
            try:
                await asyncio.wait_for(consumer.topics(), interval)
                ok = True
            except (TimeoutError, KafkaError, OSError):
                ok = False
            if ok != self._broker_ok:
                self._broker_ok = ok
                if not ok:
                    log.warning("broker unreachable")
                self._set_ready()
            self._observe_idle_lag(consumer)
            if self._workers is not None:  # an idle stream learns of a reload here, not at its next batch
                self._workers.sync(self.runtime.engine.ruleset.digest)

    def _observe_lag(self, batch: dict[TopicPartition, list[Any]]) -> None:
        assert self._consumer is not None
        for tp, records in batch.items():
            self._consumed_to[tp] = records[-1].offset + 1
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                metrics.stream_consumer_lag_records.labels(str(tp.partition)).set(
                    max(0, highwater - self._consumed_to[tp])
                )

    def _observe_idle_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp, consumed in self._consumed_to.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.stream_consumer_lag_records.labels(str(tp.partition)).set(max(0, highwater - consumed))
