"""aiokafka's transactional producer against Apache Kafka 4.x: the pieces exactly-once delivery needs.

consume → produce → `send_offsets_to_transaction` → commit; abort and retry; read_committed
readers; fencing of an older producer with the same transactional id; what an open transaction
of a crashed producer does to read_committed readers, and what ends it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from .apache_kafka import ApacheKafka
from .clients import create_topic, read_topic, unique

OPEN_TRANSACTION = Path(__file__).resolve().parent / "open_transaction.py"


@dataclass
class Pipeline:
    """An input topic with records, an empty output topic, a group, and its read_committed member."""

    bootstrap: str
    input: str
    output: str
    group: str
    consumer: AIOKafkaConsumer
    records: int = 40

    async def committed(self) -> dict[int, int | None]:
        return {p: await self.consumer.committed(TopicPartition(self.input, p)) for p in (0, 1)}

    async def wait_committed(self, expected: dict[int, int | None], timeout_seconds: float = 10) -> float:
        """Seconds until the group's offsets read as `expected`: transactional offsets become readable
        only once the transaction's markers are written, a moment after the commit returned."""
        started = time.monotonic()
        while (committed := await self.committed()) != expected:
            if time.monotonic() - started > timeout_seconds:
                raise AssertionError(f"committed offsets {committed}, expected {expected}")
            await asyncio.sleep(0.005)  # markers are written on the broker's side: there is no event to await
        return time.monotonic() - started

    async def fetch(self) -> dict[TopicPartition, list[bytes]]:
        batch = await self.consumer.getmany(timeout_ms=5000, max_records=10)
        return {tp: [r.value for r in records if r.value is not None] for tp, records in batch.items()}

    async def transform(self, producer: AIOKafkaProducer) -> int:
        """One exactly-once step: fetch, produce the results and the input offsets, in the open transaction."""
        fetched = await self.fetch()
        assert fetched, "no input record fetched within 5 s"
        for values in fetched.values():
            for value in values:
                await producer.send(self.output, value.upper())
        offsets = {tp: await self.consumer.position(tp) for tp in fetched}
        await producer.send_offsets_to_transaction(offsets, self.group)
        return sum(len(values) for values in fetched.values())


@pytest.fixture
async def pipeline(apache_kafka: ApacheKafka) -> AsyncIterator[Pipeline]:
    bootstrap = apache_kafka.bootstrap
    input_topic, output_topic, group = unique("tx-in"), unique("tx-out"), unique("tx-group")
    await create_topic(bootstrap, input_topic, partitions=2)
    await create_topic(bootstrap, output_topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(40):
            await producer.send(input_topic, f"event-{i}".encode(), partition=i % 2)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(input_topic, bootstrap_servers=bootstrap, group_id=group,
                                isolation_level="read_committed", enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=3000, heartbeat_interval_ms=1000)
    await consumer.start()
    try:
        yield Pipeline(bootstrap, input_topic, output_topic, group, consumer)
    finally:
        await consumer.stop()


async def _transactional(bootstrap: str, transactional_id: str, **options: object) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id, **options)
    await producer.start()
    return producer


async def test_output_and_input_offsets_commit_together(pipeline: Pipeline) -> None:
    """`commit_transaction()` returns once the coordinator has logged the decision; the markers that make
    the records and offsets visible are written just after. aiokafka's OffsetFetch (v0-v3) cannot ask
    for stable offsets (KIP-447's require_stable, v7), so a member fetching the group's offsets in that
    window reads the previous ones: hence the wait below, and the figure it prints."""
    producer = await _transactional(pipeline.bootstrap, unique("tx"))
    try:
        done = 0
        while done < pipeline.records:
            async with producer.transaction():
                done += await pipeline.transform(producer)
        returned = time.monotonic()
        first_read = await pipeline.committed()
        # The group's offsets came with the transactions: no consumer commit was ever called.
        await pipeline.wait_committed({0: 20, 1: 20})
        readable_seconds = time.monotonic() - returned
    finally:
        await producer.stop()
    output = await read_topic(pipeline.bootstrap, pipeline.output, 2)
    assert sorted(r.value for r in output if r.value) == sorted(f"EVENT-{i}".encode() for i in range(40))
    print(f"\noffsets read right after the last commit_transaction(): {first_read}; "
          f"{{0: 20, 1: 20}} readable {readable_seconds * 1000:.0f} ms after it returned")


async def test_an_aborted_step_leaves_no_output_and_no_offsets_and_a_retry_is_exact(pipeline: Pipeline) -> None:
    producer = await _transactional(pipeline.bootstrap, unique("tx"))
    try:
        await producer.begin_transaction()
        aborted = await pipeline.transform(producer)
        await producer.abort_transaction()
        assert aborted > 0
        assert await pipeline.committed() == {0: None, 1: None}
        assert await read_topic(pipeline.bootstrap, pipeline.output, 2) == []
        uncommitted = await read_topic(pipeline.bootstrap, pipeline.output, 2, isolation_level="read_uncommitted")
        assert len(uncommitted) == aborted  # the aborted records are in the log, hidden by the abort marker

        # aiokafka does not rewind the consumer after an abort: the retry must seek back itself.
        for tp in pipeline.consumer.assignment():
            pipeline.consumer.seek(tp, await pipeline.consumer.committed(tp) or 0)
        done = 0
        while done < pipeline.records:
            async with producer.transaction():
                done += await pipeline.transform(producer)
    finally:
        await producer.stop()
    output = await read_topic(pipeline.bootstrap, pipeline.output, 2)
    assert sorted(r.value for r in output if r.value) == sorted(f"EVENT-{i}".encode() for i in range(40))
    await pipeline.wait_committed({0: 20, 1: 20})


async def test_a_new_producer_with_the_same_transactional_id_fences_the_old_one(pipeline: Pipeline) -> None:
    transactional_id = unique("tx-member")
    zombie = await _transactional(pipeline.bootstrap, transactional_id)
    successor: AIOKafkaProducer | None = None
    try:
        await zombie.begin_transaction()
        await zombie.send_and_wait(pipeline.output, b"from-the-zombie", partition=0)
        started = time.monotonic()
        successor = await _transactional(pipeline.bootstrap, transactional_id)  # aborts the zombie's transaction
        fenced_seconds = time.monotonic() - started
        with pytest.raises(ProducerFenced):
            await zombie.send_and_wait(pipeline.output, b"after-fencing", partition=0)
        with pytest.raises(ProducerFenced):
            await zombie.commit_transaction()
        async with successor.transaction():
            await successor.send(pipeline.output, b"from-the-successor", partition=0)
    finally:
        await zombie.stop()
        if successor is not None:
            await successor.stop()
    assert [r.value for r in await read_topic(pipeline.bootstrap, pipeline.output, 2)] == [b"from-the-successor"]
    print(f"\nsuccessor started and fenced the zombie in {fenced_seconds * 1000:.0f} ms")


async def test_offsets_from_a_transaction_are_not_checked_against_the_group(pipeline: Pipeline) -> None:
    """aiokafka sends TxnOffsetCommit v0: no member id, no generation (KIP-447's group metadata), so the
    broker cannot tell a member that lost its partitions in a rebalance from their new owner. Only a
    shared transactional id fences: a producer that is not in the group commits the group's offsets."""
    assert await pipeline.fetch()  # the member has joined and holds both partitions
    outsider = await _transactional(pipeline.bootstrap, unique("tx-outsider"))
    try:
        async with outsider.transaction():
            await outsider.send_offsets_to_transaction({TopicPartition(pipeline.input, 0): 17}, pipeline.group)
    finally:
        await outsider.stop()
    await pipeline.wait_committed({0: 17, 1: None})


@dataclass
class Watermarks:
    """A one-partition topic seen by a read_committed and a read_uncommitted reader."""

    tp: TopicPartition
    committed_reader: AIOKafkaConsumer
    uncommitted_reader: AIOKafkaConsumer

    async def stable(self) -> int:
        return int((await self.committed_reader.end_offsets([self.tp]))[self.tp])  # the last stable offset

    async def high(self) -> int:
        return int((await self.uncommitted_reader.end_offsets([self.tp]))[self.tp])

    async def seconds_until_stable(self, timeout_seconds: float) -> float:
        """Seconds until the last stable offset passes today's high watermark: the open transaction ended."""
        started, high = time.monotonic(), await self.high()
        while await self.stable() < high:
            if time.monotonic() - started > timeout_seconds:
                raise AssertionError(f"the transaction was still open after {timeout_seconds} s")
            await asyncio.sleep(0.05)  # the broker ends it on its own clock: there is no event to await
        return time.monotonic() - started


@pytest.fixture
async def watermarks(apache_kafka: ApacheKafka) -> AsyncIterator[Watermarks]:
    topic = unique("open-tx")
    await create_topic(apache_kafka.bootstrap, topic)
    readers = [AIOKafkaConsumer(bootstrap_servers=apache_kafka.bootstrap, isolation_level=isolation)
               for isolation in ("read_committed", "read_uncommitted")]
    for reader in readers:
        await reader.start()
    try:
        yield Watermarks(TopicPartition(topic, 0), *readers)
    finally:
        for reader in readers:
            await reader.stop()


async def _crash_inside_a_transaction(bootstrap: str, topic: str, transactional_id: str, timeout_ms: int) -> None:
    """A producer process writes 5 records into a transaction and is SIGKILLed with it open."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(OPEN_TRANSACTION), bootstrap, topic, transactional_id, str(timeout_ms), "5",
        stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.strip() == b"sent", line
    finally:
        process.kill()
        await process.wait()


async def test_a_crashed_producers_transaction_blocks_readers_until_its_id_returns(
    apache_kafka: ApacheKafka, watermarks: Watermarks,
) -> None:
    transactional_id = unique("tx-crash")
    await _crash_inside_a_transaction(apache_kafka.bootstrap, watermarks.tp.topic, transactional_id, 60_000)
    assert (await watermarks.stable(), await watermarks.high()) == (0, 5)  # read_committed readers stop here
    started = time.monotonic()
    successor = await _transactional(apache_kafka.bootstrap, transactional_id)  # its InitProducerId aborts it
    try:
        seconds = await watermarks.seconds_until_stable(timeout_seconds=10)
    finally:
        await successor.stop()
    assert await read_topic(apache_kafka.bootstrap, watermarks.tp.topic) == []
    print(f"\nopen transaction of a crashed producer aborted {time.monotonic() - started:.2f} s after its "
          f"successor started (stable {seconds:.2f} s after the successor's start returned)")


async def test_an_abandoned_transaction_is_aborted_when_it_times_out(
    apache_kafka: ApacheKafka, watermarks: Watermarks,
) -> None:
    """No successor: the broker aborts the transaction transaction_timeout_ms after it began (checked
    every second on the test broker, every 10 s by default)."""
    await _crash_inside_a_transaction(apache_kafka.bootstrap, watermarks.tp.topic, unique("tx-gone"), 2000)
    assert (await watermarks.stable(), await watermarks.high()) == (0, 5)
    seconds = await watermarks.seconds_until_stable(timeout_seconds=30)
    assert await read_topic(apache_kafka.bootstrap, watermarks.tp.topic) == []
    print(f"\nabandoned transaction (timeout 2 s) aborted {seconds:.2f} s after its producer was killed")


async def test_transaction_markers_take_offsets_of_their_own(apache_kafka: ApacheKafka, watermarks: Watermarks) -> None:
    """Each commit or abort writes a marker at an offset no reader ever receives. A read_committed
    position steps over it, so lag is `highwater - position`; `last record offset + 1` stays one short
    of the high watermark after every transaction. An open transaction holds read_committed readers
    (and their `end_offsets`) at the last stable offset."""
    topic = watermarks.tp.topic
    producer = await _transactional(apache_kafka.bootstrap, unique("tx-markers"))
    try:
        async with producer.transaction():  # offsets 0-2, commit marker 3
            for i in range(3):
                await producer.send(topic, f"kept-{i}".encode())
        await producer.begin_transaction()  # offsets 4-5, abort marker 6
        for i in range(2):
            await producer.send(topic, f"aborted-{i}".encode())
        await producer.abort_transaction()
        async with producer.transaction():  # offset 7, commit marker 8
            await producer.send(topic, b"kept-3")

        records = await read_topic(apache_kafka.bootstrap, topic)
        assert [(r.offset, r.value) for r in records] == [(0, b"kept-0"), (1, b"kept-1"), (2, b"kept-2"),
                                                         (7, b"kept-3")]
        assert (await watermarks.stable(), await watermarks.high()) == (9, 9)
        reader = watermarks.committed_reader
        reader.assign([watermarks.tp])
        await reader.seek_to_beginning(watermarks.tp)
        seen = 0
        while seen < 4:
            seen += len((await reader.getmany(watermarks.tp, timeout_ms=5000)).get(watermarks.tp, []))
        assert await reader.position(watermarks.tp) == 9  # past the last marker: lag 0
        assert records[-1].offset + 1 == 8  # what a commit of `offset + 1` stores: lag 1 by highwater

        await producer.begin_transaction()  # offsets 9-10, left open
        await producer.send_and_wait(topic, b"open-0")
        await producer.send_and_wait(topic, b"open-1")
        assert (await watermarks.stable(), await watermarks.high()) == (9, 11)
        await producer.abort_transaction()
    finally:
        await producer.stop()
