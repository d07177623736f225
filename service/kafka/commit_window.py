"""The commit window: when a consumer loop's input offsets may be committed.

    CommitWindow        what a loop asks of its commit policy
    AtLeastOnceWindow   (REDLINE_DELIVERY=at_least_once) up to `max_batches` batches in flight; a
                        batch's offsets are committed, strictly in the order consumed, only after
                        every record it produced was acknowledged by the broker. After a produce
                        failure nothing more is committed: `recover()` lets the window settle and
                        seeks the consumer back to the last committed offsets, so the records are
                        processed again (duplicates possible, never a gap).
    TransactionalWindow (REDLINE_DELIVERY=exactly_once, transactions.py) each input partition's
                        outputs and offsets in one Kafka transaction.

The loop (batch_loop.py) only ever talks to a `CommitWindow`, and builds the one the settings ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from service.kafka.publisher import Acks, BatchPublisher, Outbox, PublishFailed
from service.kafka.records import Batch, next_offsets

log = logging.getLogger(__name__)


class WindowEvents(Protocol):
    """What the window reports (the loop turns it into metrics and readiness)."""

    def committed(self, ok: bool) -> None: ...
    def produce_failed(self) -> None: ...
    def broker_reachable(self, ok: bool) -> None: ...
    def failure_changed(self) -> None: ...
    def in_flight(self, batches: int) -> None: ...


class CommitWindow(Protocol):
    @property
    def per_partition(self) -> bool:
        """True when each submit must carry the records of one input partition only."""
    @property
    def failure(self) -> BaseException | None: ...
    @property
    def full(self) -> bool: ...
    @property
    def in_flight(self) -> int: ...
    def start(self) -> None: ...
    def check(self) -> None:
        """Raise what stopped the window for good, if anything did."""
    def accepts(self, tp: TopicPartition) -> bool:
        """False while records of `tp` cannot be taken: they are dropped, and the window seeks
        the partition where it must go on (`realign`, `recover`)."""
    async def realign(self) -> None:
        """Before a fetch: the seeks the window wants done."""
    async def submit(self, batch: Batch, outbox: Outbox) -> None:
        """Produce what `batch` gave; its offsets are committed once that is done."""
    async def wait_for_room(self, seconds: float) -> bool: ...
    async def settle(self, limit_seconds: float | None) -> bool:
        """Commit what is in flight; True once nothing is."""
    async def recover(self) -> set[TopicPartition] | None:
        """After a failure: seek back to the last commit. The partitions sought back, or None
        when asked to stop first."""
    async def assigned(self, partitions: set[TopicPartition]) -> None: ...
    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """After `settle`: the partitions' next owner resumes from their last commit."""
    async def close(self, drain_seconds: float) -> bool: ...


@dataclass(slots=True)
class _Unit:
    offsets: dict[TopicPartition, int]  # next offset to commit per partition
    acks: Acks  # one per produced batch
    delivered: Callable[[], None] | None


class AtLeastOnceWindow:
    per_partition = False  # one batch, every partition it holds, one publish

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        publisher: BatchPublisher,
        stop: asyncio.Event,
        events: WindowEvents,
        *,
        dead_letter_topic: str,
        max_batches: int,
        retry_backoff_max_seconds: float,
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self.dead_letter_topic = dead_letter_topic
        self._stop = stop
        self._events = events
        self.max_batches = max_batches
        self.retry_backoff_max_seconds = retry_backoff_max_seconds
        self._units: deque[_Unit] = deque()
        self._added = asyncio.Event()
        self._done = asyncio.Event()
        self._resume: dict[TopicPartition, int] = {}  # where to seek back to after a failure
        self._failure: BaseException | None = None
        self._committer: asyncio.Task[None] | None = None

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    @property
    def full(self) -> bool:
        return len(self._units) >= self.max_batches

    @property
    def in_flight(self) -> int:
        return len(self._units)

    def start(self) -> None:
        self._committer = asyncio.create_task(self._commit_loop(), name="redline-committer")

    def check(self) -> None:
        """Raise what stopped the committer, if it stopped."""
        committer = self._committer
        if committer is not None and committer.done():
            committer.result()
            raise RuntimeError("the committer stopped")

    def accepts(self, tp: TopicPartition) -> bool:
        return True

    async def realign(self) -> None:
        pass  # aiokafka starts assigned partitions at their committed offsets itself

    async def submit(self, batch: Batch, outbox: Outbox) -> None:
        """Publish a batch's outputs; its offsets are committed once they are all acknowledged."""
        for tp, records in batch.items():  # before anything is sent: a failure seeks back here
            self._resume.setdefault(tp, records[0].offset)
        try:
            acks = await self._publisher.publish(outbox, self.dead_letter_topic)
        except PublishFailed as exc:  # no metadata or no room in time: the broker is away
            acks = exc.acks  # what was queued still settles before a recovery seeks back
            self._events.produce_failed()
            self._fail(exc.error)
        self._units.append(_Unit(next_offsets(batch), acks, outbox.delivered))
        self._events.in_flight(len(self._units))
        self._added.set()

    async def wait_for_room(self, seconds: float) -> bool:
        """Wait up to `seconds` for the oldest batch to settle; whether one did."""
        self._done.clear()
        try:
            await asyncio.wait_for(self._done.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def settle(self, limit_seconds: float | None) -> bool:
        """Wait until every batch in the window was committed or discarded."""
        deadline = None if limit_seconds is None else time.monotonic() + limit_seconds
        while self._units:
            self._done.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), remaining)
        return True

    async def recover(self) -> set[TopicPartition] | None:
        """After a failure: let the window settle, seek back to the last commit and take batches
        again. None when a stop was asked for before the window settled."""
        # Every ack ends (acknowledged, failed, or expired by aiokafka); a commit may hang while the
        # broker is away, so look up now and then whether we are asked to stop.
        while not await self.settle(1.0):
            if self._stop.is_set():
                return None
        assignment = self._consumer.assignment()
        sought: set[TopicPartition] = set()
        for tp, offset in self._resume.items():
            if tp in assignment:
                self._consumer.seek(tp, offset)
                sought.add(tp)
        self._failure = None
        self._events.failure_changed()
        return sought

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        pass  # aiokafka reads the committed offsets itself

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._resume.pop(tp, None)

    async def close(self, drain_seconds: float) -> bool:
        """Drain: wait up to `drain_seconds` for the window to settle, then stop committing."""
        committer = self._committer
        drained = committer is None or committer.done() or await self.settle(drain_seconds)
        if committer is not None:
            committer.cancel()
            # A committer that failed had its error raised by check(): only end it here.
            await asyncio.gather(committer, return_exceptions=True)
        return drained

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            log.warning("produce failed; re-processing from the last commit", extra={"error": repr(error)})
            self._failure = error
            self._events.failure_changed()

    async def _commit_loop(self) -> None:
        """Settle batches in order; commit each one whose records were all acknowledged."""
        while True:
            while not self._units:
                self._added.clear()
                await self._added.wait()
            unit = self._units[0]
            results = await asyncio.gather(*unit.acks, return_exceptions=True)
            error = next((r for r in results if isinstance(r, BaseException)), None)
            if isinstance(error, asyncio.CancelledError):
                raise error
            if error is not None and self._failure is None:
                self._events.produce_failed()
                self._fail(error)
            if self._failure is None:
                if unit.delivered is not None:
                    unit.delivered()
                await self._commit(unit.offsets)
            self._units.popleft()
            self._events.in_flight(len(self._units))
            self._done.set()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        attempt = 0
        while offsets:
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group moved on without us: the new owner re-processes from its last commit.
                self._events.committed(False)
                log.warning("commit refused after a rebalance", extra={"error": repr(exc)})
                return
            except KafkaError as exc:
                # Retriable (coordinator moving, broker away): retry, holding the window full
                # so that the consumer pauses instead of racing ahead of its commits.
                self._events.committed(False)
                self._events.broker_reachable(False)
                attempt += 1
                if self._stop.is_set() and attempt > 3:
                    log.warning("commit failed while stopping", extra={"error": repr(exc)})
                    return
                await asyncio.sleep(min(self.retry_backoff_max_seconds, 0.2 * 2 ** min(attempt, 6)))
                assigned = consumer.assignment()
                offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
                continue
            self._events.committed(True)
            self._events.broker_reachable(True)
            self._resume.update(offsets)
            return
