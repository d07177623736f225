"""A partition's transaction commits once it is `transaction_interval_ms` old, also while its
batches keep coming and its queue is never empty when a produce ends (under a steady flow it never is): on a stand-in
producer whose every produce takes a few milliseconds. Only the ordering logic of one partition's
task; the broker side is proved by the stream and reliability suites on Apache Kafka."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from service.kafka.publisher import Outbox, Routes
from service.kafka.transactions import _PartitionTransactions, _Unit

TP = TopicPartition("in", 0)
PRODUCE_SECONDS = 0.005
INTERVAL_SECONDS = 0.05


@dataclass
class Builder:
    items: int = 0

    def append(self, **fields: Any) -> object:
        self.items += 1
        return fields


@dataclass
class Producer:
    calls: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    def create_batch(self) -> Builder:
        return Builder()

    async def send_batch(self, batch: Builder, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.batch_sizes.append(batch.items)
        await asyncio.sleep(PRODUCE_SECONDS)  # a produce waits for the previous batch to drain
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        self.calls.append(f"offsets {offsets[TP]}")

    async def commit_transaction(self) -> None:
        self.calls.append("commit")

    async def stop(self) -> None:
        pass


@dataclass
class Window:
    """What a partition's task reports to (TransactionalWindow's side)."""

    interval_seconds: float = INTERVAL_SECONDS
    routes: Routes = field(default_factory=dict)
    dead_letter_topic: str = "dlq"
    group_id: str = "group"
    errors: list[BaseException] = field(default_factory=list)

    def dequeued(self) -> None:
        pass

    def committed(self, partition: object, units: int) -> None:
        pass

    def failed(self, partition: object, error: BaseException, *, in_commit: bool) -> None:
        self.errors.append(error)


async def test_a_transaction_commits_at_its_interval_while_batches_keep_coming() -> None:
    producer, window = Producer(), Window()
    partition = _PartitionTransactions(TP, producer, window)  # type: ignore[arg-type]
    try:
        # A unit every millisecond, a produce taking 5 ms: units keep queuing, for ten intervals.
        started, offset = time.monotonic(), 0
        while time.monotonic() - started < 10 * INTERVAL_SECONDS:
            offset += 1
            partition.put(_Unit(Outbox(placed=[("out", 0, [(b"chat", b"verdict", [])])]), offset + 1, 1))
            await asyncio.sleep(0.001)
        # What queued during one produce goes out together in the next: several units a batch
        # means the queue held units whenever a produce ended (a steady flow), the case in which a
        # commit that waited for an empty queue never came.
        assert sum(producer.batch_sizes) / len(producer.batch_sizes) > 2, producer.batch_sizes[:10]
        # Committed at the interval (~every 55 ms: ~9 commits), not once the queue empties.
        assert producer.calls.count("commit") >= 4, producer.calls[-5:]
        assert window.errors == []
        # Each commit carries the offset after the last unit produced in its transaction, in order.
        offsets = [int(call.split()[1]) for call in producer.calls if call.startswith("offsets")]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    finally:
        await partition.close()
