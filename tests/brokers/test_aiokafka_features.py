"""What aiokafka does against Apache Kafka 4.x outside transactions: records, groups, offsets, idempotence.

Where tansu answers differently, the test says what Apache Kafka answers, so code written against
one broker is not fooled by the other.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidSessionTimeoutError
from aiokafka.structs import ConsumerRecord

from .apache_kafka import ApacheKafka
from .clients import create_topic, read_topic, unique
from .plugin import ApacheKafkaFactory

COMPRESSIONS = [None, "gzip", "snappy", "lz4", "zstd"]  # every codec Redline's producer offers


@pytest.mark.parametrize("compression", COMPRESSIONS)
async def test_keys_headers_and_values_round_trip(apache_kafka: ApacheKafka, compression: str | None) -> None:
    topic = unique(f"records-{compression}")
    await create_topic(apache_kafka.bootstrap, topic)
    sent = [(f"chat-{i % 3}".encode(), f"值-{i}".encode() * (i + 1), [("seq", str(i).encode()), ("empty", b"")])
            for i in range(50)]
    producer = AIOKafkaProducer(bootstrap_servers=apache_kafka.bootstrap, compression_type=compression,
                                acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, value, headers in sent:
            await producer.send(topic, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()
    received = await read_topic(apache_kafka.bootstrap, topic)
    assert [(r.key, r.value, list(r.headers)) for r in received] == sent


async def test_a_group_member_resumes_from_the_committed_offsets(apache_kafka: ApacheKafka) -> None:
    topic, group = unique("group"), unique("group")
    await create_topic(apache_kafka.bootstrap, topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=apache_kafka.bootstrap)
    await producer.start()
    try:
        for i in range(20):
            await producer.send(topic, str(i).encode(), partition=i % 2)
        await producer.flush()
    finally:
        await producer.stop()

    def member() -> AIOKafkaConsumer:
        # 3 s sessions, as the stream tests use: the fixture lowers the broker's 6 s floor for them.
        return AIOKafkaConsumer(topic, bootstrap_servers=apache_kafka.bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=3000,
                                heartbeat_interval_ms=1000, max_poll_records=3)

    first = member()
    started = time.monotonic()
    await first.start()
    try:
        batch = await first.getmany(timeout_ms=10_000)
        joined_seconds = time.monotonic() - started
        consumed = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        assert consumed and all(offset <= 3 for offset in consumed.values())
        await first.commit(consumed)
        assert {tp: await first.committed(tp) for tp in consumed} == consumed
    finally:
        await first.stop()  # leaves the group: the next member is assigned at once

    second = member()
    await second.start()
    try:
        resumed: dict[TopicPartition, int] = {}
        while len(resumed) < 2:
            for tp, records in (await second.getmany(timeout_ms=10_000)).items():
                resumed.setdefault(tp, records[0].offset)
    finally:
        await second.stop()
    assert resumed == {tp: consumed.get(tp, 0) for tp in resumed}
    print(f"\nfirst member joined and fetched in {joined_seconds:.2f} s")


async def test_end_offsets_is_the_high_watermark(apache_kafka: ApacheKafka) -> None:
    """tansu's ListOffsets answers an offset inside the last batch (9 for these 12 records when tried);
    Apache Kafka answers the high watermark, so `end_offsets` and the fetch's `highwater` agree and lag
    can be computed from either (outside transactions: see test_transactions.py for their markers)."""
    topic = unique("watermark")
    await create_topic(apache_kafka.bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=apache_kafka.bootstrap, linger_ms=0)
    await producer.start()
    try:
        for batch in range(3):  # three batches of four records
            for i in range(4):
                await producer.send(topic, f"{batch}-{i}".encode())
            await producer.flush()
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=apache_kafka.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        assert (await consumer.end_offsets([tp]))[tp] == 12
        assert consumer.highwater(tp) is None  # known only after a fetch
        records: list[ConsumerRecord[bytes, bytes]] = []
        while len(records) < 12:
            records.extend((await consumer.getmany(tp, timeout_ms=5000)).get(tp, []))
        assert consumer.highwater(tp) == 12
        assert consumer.last_stable_offset(tp) == 12
        assert await consumer.position(tp) == 12
    finally:
        await consumer.stop()


async def test_the_idempotent_producer_writes_each_record_once_in_order(apache_kafka: ApacheKafka) -> None:
    """tansu refuses InitProducerId, so `enable_idempotence=True` fails at start there; Apache Kafka
    assigns a producer id and accepts several batches in flight per partition without reordering."""
    topic = unique("idempotent")
    await create_topic(apache_kafka.bootstrap, topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=apache_kafka.bootstrap, enable_idempotence=True,
                                linger_ms=2, max_batch_size=1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, f"{i:05d}".encode(), key=f"chat-{i % 7}".encode())
                   for i in range(2000)]
        metadata = [await future for future in futures]
    finally:
        await producer.stop()
    records = await read_topic(apache_kafka.bootstrap, topic, 2)
    assert sorted(r.value for r in records if r.value is not None) == [f"{i:05d}".encode() for i in range(2000)]
    for partition in (0, 1):  # per partition, the send order is the log order
        values = [r.value for r in records if r.partition == partition]
        assert values == sorted(values)
    # Offsets acknowledged to the producer are exactly where the records are.
    assert {(m.partition, m.offset) for m in metadata} == {(r.partition, r.offset) for r in records}


async def test_a_session_timeout_below_the_brokers_floor_is_refused(
    apache_kafka_factory: ApacheKafkaFactory,
) -> None:
    """Apache Kafka's default floor is 6 s (`group.min.session.timeout.ms`); the test brokers lower
    it to 1 s. A production broker refuses the 3 s sessions the stream tests use, at join time."""
    kafka = apache_kafka_factory(properties={"group.min.session.timeout.ms": "6000"})
    await asyncio.to_thread(kafka.start)
    topic = unique("floor")
    await create_topic(kafka.bootstrap, topic)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, group_id=unique("floor"),
                                session_timeout_ms=3000, heartbeat_interval_ms=1000)
    try:
        with pytest.raises(InvalidSessionTimeoutError):  # fatal: start() gives up at the first JoinGroup
            await consumer.start()
    finally:
        await consumer.stop()
