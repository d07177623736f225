"""Batch produce with aiokafka's batch API (`create_batch` / `send_batch`).

One `send()` per record costs ~20 µs of client CPU; filling BatchBuilders per output partition
costs a fraction of that. Keys are mapped to partitions with the Java client's murmur2 partitioner
(so a chat's verdicts land where any Kafka client would put that key), cached per key because
aiokafka's murmur2 is pure Python and chat ids repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

_PARTITION_CACHE_MAX: Final = 200_000

Item = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]


class BatchPublisher:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._cache: dict[str, tuple[list[int], dict[bytes, int]]] = {}

    async def partitions(self, topic: str) -> list[int]:
        return sorted(await self._producer.partitions_for(topic))

    async def key_router(self, topic: str) -> dict[bytes, int]:
        """A key → partition cache for `topic`, reset when its partition count changes."""
        partitions = await self.partitions(topic)
        cached = self._cache.get(topic)
        if cached is None or cached[0] != partitions or len(cached[1]) > _PARTITION_CACHE_MAX:
            cached = (partitions, {})
            self._cache[topic] = cached
        return cached[1]

    def partition_for(self, topic: str, key: bytes, router: dict[bytes, int]) -> int:
        partition = router.get(key)
        if partition is None:
            partitions = self._cache[topic][0]
            partition = router[key] = self._partitioner(key, partitions, partitions)
        return partition

    async def send(self, topic: str, partition: int, items: Iterable[Item]) -> list[asyncio.Future[Any]]:
        """Queue `items` in order to one partition; futures resolve when the broker acknowledged."""
        producer = self._producer
        futures: list[asyncio.Future[Any]] = []
        batch = producer.create_batch()
        pending = 0
        for key, value, headers in items:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                # The first record always fits an empty batch, however large.
                batch.append(key=key, value=value, timestamp=None, headers=headers)
                pending = 0
            pending += 1
        if pending:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures
