"""The commit window: when a consumer loop's input offsets may be committed (at-least-once).

    CommitWindow        what a loop asks of its commit policy
    AtLeastOnceWindow   up to `max_batches` batches in flight; a batch's offsets are committed,
                        strictly in the order consumed, only after every record it produced was
                        acknowledged by the broker. After a produce failure nothing more is
                        committed: `recover()` lets the window settle and seeks the consumer back
                        to the last committed offsets, so the records are processed again
                        (duplicates possible, never a gap).

A transactional policy (exactly-once) has the same shape: `submit` would begin a transaction,
publish, add the batch's offsets to it (`send_offsets_to_transaction`) and commit it; `recover`
would abort and seek back. The loop (batch_loop.py) only ever talks to a `CommitWindow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from service.kafka.publisher import Acks, PublishFailed
from service.kafka.records import Batch, next_offsets

log = logging.getLogger(__name__)

Publish = Callable[[], Awaitable[Acks]]


class WindowEvents(Protocol):
    """What the window reports (the loop turns it into metrics and readiness)."""

    def committed(self, ok: bool) -> None: ...
    def produce_failed(self) -> None: ...
    def broker_reachable(self, ok: bool) -> None: ...
    def failure_changed(self) -> None: ...
    def in_flight(self, batches: int) -> None: ...


class CommitWindow(Protocol):
    @property
    def failure(self) -> BaseException | None: ...
    @property
    def full(self) -> bool: ...
    @property
    def in_flight(self) -> int: ...
    def start(self) -> None: ...
    def check(self) -> None: ...
    async def submit(self, batch: Batch, publish: Publish, delivered: Callable[[], None] | None) -> None: ...
    async def wait_for_room(self, seconds: float) -> bool: ...
    async def settle(self, limit_seconds: float | None) -> bool: ...
    async def recover(self) -> bool: ...
    def forget(self, partitions: set[TopicPartition]) -> None: ...
    async def close(self, drain_seconds: float) -> bool: ...


@dataclass(slots=True)
class _Unit:
    offsets: dict[TopicPartition, int]  # next offset to commit per partition
    acks: Acks  # one per produced batch
    delivered: Callable[[], None] | None


class AtLeastOnceWindow:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        stop: asyncio.Event,
        events: WindowEvents,
        *,
        max_batches: int,
        retry_backoff_max_seconds: float,
    ) -> None:
        self._consumer = consumer
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

    async def submit(self, batch: Batch, publish: Publish, delivered: Callable[[], None] | None) -> None:
        """Publish a batch's outputs; its offsets are committed once they are all acknowledged."""
        for tp, records in batch.items():  # before anything is sent: a failure seeks back here
            self._resume.setdefault(tp, records[0].offset)
        try:
            acks = await publish()
        except PublishFailed as exc:  # no metadata or no room in time: the broker is away
            acks = exc.acks  # what was queued still settles before a recovery seeks back
            self._events.produce_failed()
            self._fail(exc.error)
        self._units.append(_Unit(next_offsets(batch), acks, delivered))
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

    async def recover(self) -> bool:
        """After a failure: let the window settle, seek back to the last commit and take batches
        again. False when a stop was asked for before the window settled."""
        # Every ack ends (acknowledged, failed, or expired by aiokafka); a commit may hang while the
        # broker is away, so look up now and then whether we are asked to stop.
        while not await self.settle(1.0):
            if self._stop.is_set():
                return False
        assignment = self._consumer.assignment()
        for tp, offset in self._resume.items():
            if tp in assignment:
                self._consumer.seek(tp, offset)
        self._failure = None
        self._events.failure_changed()
        return True

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Partitions revoked (after `settle`): their next owner resumes from their last commit."""
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
