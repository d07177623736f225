"""The plumbing on its own against the real broker: a `BatchLoop` with a handler that knows
nothing of events (it upper-cases values, dead-letters the ones that say "bad") consumes, produces
to its topics, commits everything on the way out and reports readiness."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.kafka.batch_loop import BatchLoop
from service.kafka.connection import Clients
from service.kafka.dead_letters import REASON_HEADER, dead_lettering, header_value
from service.kafka.publisher import Outbox
from service.kafka.records import Batch, Item
from service.readiness import Readiness
from service.settings import Settings
from tests.kafka_helpers import read_topic

PARTITIONS = 3


class Shout:
    """The domain side: values upper-cased to `output`, keyed as they came."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.to_dead_letter = dead_lettering(1024)
        self.assignments: list[set[TopicPartition]] = []
        self.delivered = 0

    async def prepare(self, clients: Clients) -> None:
        pass

    def accepts(self, tp: TopicPartition) -> bool:
        return True

    def handle(self, batch: Batch) -> Outbox:
        outbox = Outbox()
        items: list[Item] = []
        for records in batch.values():
            for record in records:
                if record.value == b"bad":
                    outbox.dead_letters.append(self.to_dead_letter(record, "invalid_event", "it says bad"))
                else:
                    items.append((record.key, record.value.upper(), []))
        outbox.keyed.append((self.output, items))
        outbox.delivered = self._count_delivered
        return outbox

    def _count_delivered(self) -> None:
        self.delivered += 1

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        self.assignments.append(partitions)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        pass


async def test_a_loop_with_a_handler_of_its_own(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    source, output, dlq, group = f"plain-in-{run}", f"plain-out-{run}", f"plain-dlq-{run}", f"plain-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in (source, output, dlq)])
    finally:
        await admin.close()
    values = [b"bad" if i % 50 == 7 else f"value-{i}".encode() for i in range(600)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(source, value, key=f"k{i % 17}".encode())
        await producer.flush()
    finally:
        await producer.stop()

    settings = Settings(kafka_bootstrap=kafka_bootstrap, dlq_topic=dlq, session_timeout_ms=3000, batch_max_records=64)
    readiness = Readiness()
    handler = Shout(output)
    loop = BatchLoop(settings, handler, name="shout", topic=source, group_id=group,
                     readiness=readiness.part("shout", "shout not in its group"))
    assert readiness.state() == (False, ["shout not in its group"])
    task = asyncio.create_task(loop.run())
    try:
        shouted = await read_topic(kafka_bootstrap, output, len(values) - values.count(b"bad"))
        letters = await read_topic(kafka_bootstrap, dlq, values.count(b"bad"))
        assert readiness.state() == (True, [])
    finally:
        loop.request_stop()
        await task
    assert readiness.state()[0] is False  # stopped: no longer in the group
    assert sorted(r.value for r in shouted) == sorted(v.upper() for v in values if v != b"bad")  # type: ignore[attr-defined]
    assert {header_value(r.headers, REASON_HEADER) for r in letters} == {b"invalid_event"}  # type: ignore[attr-defined]
    assert handler.assignments and handler.delivered > 0
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        committed = [await consumer.committed(TopicPartition(source, p)) or 0 for p in range(PARTITIONS)]
    finally:
        await consumer.stop()
    assert sum(committed) == len(values)  # drained: every record committed once its outputs were acked
