"""Small aiokafka helpers for the broker tests: unique names, topics, and reading a topic to its end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_topic(
    bootstrap: str, name: str, partitions: int = 1, options: Mapping[str, object] | None = None
) -> None:
    """`options`: security and other client settings besides the bootstrap servers."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(options or {}))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def read_topic(
    bootstrap: str, topic: str, partitions: int = 1, *, isolation_level: str = "read_committed",
    timeout_seconds: float = 15.0, **options: object,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of the topic's `partitions` up to the end the broker answers when the read starts
    (the last stable offset for read_committed, the high watermark otherwise), in partition then
    offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level,
                                enable_auto_commit=False, auto_offset_reset="earliest", **options)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends: Mapping[TopicPartition, int] = await consumer.end_offsets(assigned)
        records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {tp: [] for tp in assigned}

        async def read() -> None:
            while any([await consumer.position(tp) < ends[tp] for tp in assigned]):
                for tp, batch in (await consumer.getmany(timeout_ms=200)).items():
                    records[tp].extend(batch)

        await asyncio.wait_for(read(), timeout_seconds)
        return [record for tp in assigned for record in records[tp]]
    finally:
        await consumer.stop()
