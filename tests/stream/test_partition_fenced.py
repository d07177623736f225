"""Exactly once, one partition fenced again and again while the others flow: nothing of theirs is
lost or doubled.

A failed partition is sought back to its last commit and processed again; the other partitions go
on. A batch the loop fetched just as a partition failed holds records of the others too, fetched
past their position: they must be fetched again, not dropped. (Found by the zombie test: 50
verdicts of a healthy partition, one fetched batch, never written while the partition's offsets
were committed past them.)"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiokafka import TopicPartition

from service.events import decode_verdict
from service.kafka.topics import ensure_topics
from service.kafka.transactions import transactional_id
from service.runtime import Runtime
from service.sample_traffic import SampleTraffic
from service.stream.processor import StreamProcessor
from tests.kafka_helpers import StreamBroker, Topics, fence, produce_paced, read_to_end, read_verdict_ids

FENCED_PARTITION = 1


@pytest.mark.parametrize("broker", ["kafka-eos"], indirect=True)
async def test_a_partition_fenced_again_and_again_costs_the_others_nothing(
    broker: StreamBroker, topics: Topics
) -> None:
    # Small batches and a paced input: the loop is often waiting for records when a fence strikes.
    settings = topics.settings(broker, batch_max_records=50, transaction_interval_ms=200)
    await ensure_topics(settings)
    records = SampleTraffic(seed=73, malformed_ratio=0.0).records(12_000)
    expected = {r.event_id for r in records if r.event_id is not None}
    processor = StreamProcessor(settings, Runtime.load(settings))
    task = asyncio.create_task(processor.run())
    fences = 0
    try:
        producing = asyncio.create_task(produce_paced(broker, topics.input, records, chunk=200, pause_seconds=0.05))
        tid = transactional_id(settings.group_id, TopicPartition(topics.input, FENCED_PARTITION))
        while not producing.done():
            await asyncio.sleep(0.25)
            await fence(broker.bootstrap, tid)
            fences += 1
        await producing
        seen = set(await read_verdict_ids(broker, topics.output, expected, timeout_seconds=60))
        assert expected - seen == set(), f"{len(expected - seen)} events without a verdict after {fences} fences"
    finally:
        processor.request_stop()
        await task
    counts = Counter(decode_verdict(r.value).event_id for r in await read_to_end(broker, topics.output))
    assert set(counts) == expected and max(counts.values()) == 1
    print(f"\n{fences} fences of partition {FENCED_PARTITION}: {len(expected)} verdicts, each once")
