"""Send counter requests to the internal counter topic, each to the partition its key hashes to."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from service.stream.pipeline import CounterRecord
from service.stream.publisher import BatchPublisher, Item


async def send_counter_requests(
    publisher: BatchPublisher, topic: str, requests: Sequence[CounterRecord]
) -> list[asyncio.Future[Any]]:
    """Queue the requests (in order per partition); futures resolve when the broker acknowledged."""
    router = await publisher.key_router(topic)
    groups: dict[int, list[Item]] = {}
    for request in requests:
        partition = publisher.partition_for(topic, request.key, router)
        groups.setdefault(partition, []).append((request.key, request.value, []))
    futures: list[asyncio.Future[Any]] = []
    for partition, items in groups.items():
        futures += await publisher.send(topic, partition, items)
    return futures
