"""Records the consume loop fetched and does not hand to the commit window are fetched again.

The consumer's position moves past whatever `getmany` returns. The backpressure path polls with a
zero timeout to stay in the group; that poll returns nothing of the partitions it paused, but a
rebalance while it waited leaves new, unpaused partitions whose prefetched records it may return.
Dropped there, they were lost under at_least_once (nothing seeks a healthy partition back). The
consumer is a stand-in: aiokafka's behaviour is aiokafka's; what is tested is the loop's rule. The
same rule on the main path (a partition failing while a batch of several was fetched) is proved
on Apache Kafka by tests/stream/test_partition_fenced.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from service.kafka.batch_loop import BatchLoop
from service.kafka.connection import Clients
from service.readiness import Readiness
from service.settings import Settings

OLD, NEW = TopicPartition("t", 0), TopicPartition("t", 1)


@dataclass
class _Record:
    offset: int


@dataclass
class _RebalancingConsumer:
    """Assigned OLD; during the zero-timeout poll a rebalance assigns NEW, whose prefetched
    records the poll returns."""

    assigned: set[TopicPartition] = field(default_factory=lambda: {OLD})
    paused_now: set[TopicPartition] = field(default_factory=set)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_now |= set(partitions)

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        self.assigned, self.paused_now = {NEW}, set()
        return {NEW: [_Record(40), _Record(41)]}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


class _FullWindow:
    async def wait_for_room(self, seconds: float) -> bool:
        return False  # the oldest batch takes long: the loop pauses and polls


async def test_records_the_backpressure_poll_returns_are_fetched_again() -> None:
    loop = BatchLoop(Settings(poll_timeout_ms=10), handler=None, name="test", topic="t",  # type: ignore[arg-type]
                     group_id="g", readiness=Readiness().part("test", "not ready"))
    consumer = _RebalancingConsumer()
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await loop._wait_for_room(_FullWindow(), Clients(consumer, None, None), stop)  # type: ignore[arg-type]
    assert consumer.seeks == [(NEW, 40)]
