"""Send keyed records, each to the partition its key hashes to (murmur2, as the Java client)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from service.stream.pipeline import CounterRecord
from service.stream.publisher import BatchPublisher, Item


async def send_keyed(publisher: BatchPublisher, topic: str, items: Iterable[Item]) -> list[asyncio.Future[Any]]:
    """Queue keyed items (in order per partition); futures resolve when the broker acknowledged."""
    router = await publisher.key_router(topic)
    groups: dict[int, list[Item]] = {}
    for item in items:
        key = item[0]
        assert key is not None, "a keyed record"
        groups.setdefault(publisher.partition_for(topic, key, router), []).append(item)
    futures: list[asyncio.Future[Any]] = []
    for partition, group in groups.items():
        futures += await publisher.send(topic, partition, group)
    return futures


async def send_counter_requests(
    publisher: BatchPublisher, topic: str, requests: Sequence[CounterRecord]
) -> list[asyncio.Future[Any]]:
    """Counter requests to the internal counter topic, keyed by their next state key."""
    return await send_keyed(publisher, topic, ((r.key, r.value, []) for r in requests))
