"""exactly_once on Apache Kafka: a counter owner whose transaction is aborted under it — another
producer starts with its transactional id, as the partition's next owner would after a rebalance —
processes the partition again from the committed state, and counts every sighting once.

In-process (the stream's first pass and the counter owner, each a `BatchLoop` with the
transactional window), with transactions held open 3 s so that the test can strike inside one: it
waits until the owner's verdicts are in the log (read_uncommitted), then fences every counter
partition. The owner's commit is refused (ProducerFenced); it takes a new producer, seeks back to
the committed offsets and restores the partition from the changelog before counting again. Had it
kept the counts of the aborted batch in memory, each sighting would be counted against a state that
already held the later ones (six chats each: every verdict would match, not four).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition

from service.counters.owner import CounterOwner
from service.events import decode_verdict
from service.kafka.topics import ensure_topics
from service.kafka.transactions import transactional_id
from service.runtime import Runtime
from service.sample_traffic import SampleRecord
from service.stream.processor import StreamProcessor
from tests.kafka_helpers import REPO, StreamBroker, Topics, fence, produce, read_to_end

PACK = REPO / "tests" / "packs" / "counters"
CHATS = 6
AT_LEAST = 3  # rumor.spread in tests/packs/counters


async def test_a_fenced_owner_counts_again_from_the_committed_state(apache_kafka: object, topics: Topics) -> None:
    broker = StreamBroker("apache-kafka", apache_kafka.bootstrap, "exactly_once")  # type: ignore[attr-defined]
    settings = topics.settings(broker, rules=PACK, transaction_interval_ms=3000)
    await ensure_topics(settings)
    runtime = Runtime.load(settings)
    stream, owner = StreamProcessor(settings, runtime), CounterOwner(settings, runtime)
    tasks = [asyncio.create_task(stream.run()), asyncio.create_task(owner.run())]
    try:
        sent = datetime.now(UTC)
        records = [
            SampleRecord(f"chat-{c}".encode(), json.dumps(
                {"id": f"r{c}", "chat": {"id": f"chat-{c}"}, "text": "网传明天全市停水，速转",
                 "sent_at": (sent + timedelta(minutes=c)).isoformat()}, ensure_ascii=False).encode(), f"r{c}")
            for c in range(CHATS)
        ]
        await produce(broker, topics.input, records)
        # The owner's verdicts are written inside its open transaction: visible read_uncommitted only.
        deadline = time.monotonic() + 60
        while len(await read_to_end(broker, topics.output, isolation_level="read_uncommitted")) < CHATS:
            assert time.monotonic() < deadline, "the owner never decided the counted events"
            await asyncio.sleep(0.1)  # the log has no notification to await
        assert await read_to_end(broker, topics.output) == [], "committed already: the fence would strike nothing"
        for partition in range(settings.topic_partitions):  # the partitions' next owner starts
            tid = transactional_id(f"{topics.group}.counters",
                                   TopicPartition(settings.counter_requests_topic, partition))
            await fence(broker.bootstrap, tid)  # aborts the owner's open transaction, fences its producer
        while len({decode_verdict(r.value).event_id for r in await read_to_end(broker, topics.output)}) < CHATS:
            assert time.monotonic() < deadline, "the owner did not recover"
            await asyncio.sleep(0.1)
    finally:
        stream.request_stop()
        owner.request_stop()
        await asyncio.gather(*tasks)
    verdicts = [decode_verdict(r.value) for r in await read_to_end(broker, topics.output)]
    aborted = len(await read_to_end(broker, topics.output, isolation_level="read_uncommitted")) - len(verdicts)
    assert sorted(v.event_id for v in verdicts) == sorted(r.event_id for r in records)  # type: ignore[type-var]
    assert aborted >= CHATS  # the fenced transaction's verdicts stayed in the log, unread
    matched = sum(1 for v in verdicts if any(m.rule == "rumor.spread" for m in v.matches))
    assert matched == CHATS - AT_LEAST + 1  # counts 1..6, each sighting once: 3, 4, 5 and 6 match
