"""The stream loop in-process against the real broker: verdicts for every event, in order; DLQ."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from service.decisions import RULESET_HEADER
from service.events import decode_verdict
from service.kafka.dead_letters import OFFSET_HEADER, REASON_HEADER, TOPIC_HEADER, header_value
from service.kafka.topics import ensure_topics
from service.runtime import Runtime
from service.sample_traffic import SampleRecord, SampleTraffic
from service.stream.processor import StreamProcessor
from tests.kafka_helpers import Topics, produce, read_topic, ready


async def committed_offsets(bootstrap: str, topics: Topics) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=topics.group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topics.input, p)) for p in range(4)}
    finally:
        await consumer.stop()


async def test_every_event_gets_one_verdict_in_chat_order(kafka_bootstrap: str, topics: Topics) -> None:
    settings = topics.settings(kafka_bootstrap, batch_max_records=500)
    await ensure_topics(settings)
    records = SampleTraffic(seed=11, malformed_ratio=0.0).records(3000)
    await produce(kafka_bootstrap, topics.input, records)
    runtime = Runtime.load(settings)
    processor = StreamProcessor(settings, runtime)
    task = asyncio.create_task(processor.run())
    try:
        found = await read_topic(kafka_bootstrap, topics.output, len(records))
        assert ready(runtime)
    finally:
        processor.request_stop()
        await task
    assert not ready(runtime)
    verdicts = [(r.key, decode_verdict(r.value), r.headers) for r in found]  # type: ignore[attr-defined]
    assert sorted(v.event_id for _, v, _ in verdicts) == sorted(r.event_id for r in records)  # type: ignore[type-var]
    # Per chat (= record key on both topics), verdicts come out in the order the events went in.
    sent: dict[bytes, list[str | None]] = defaultdict(list)
    for record in records:
        sent[record.key].append(record.event_id)
    received: dict[bytes, list[str]] = defaultdict(list)
    for key, verdict, _ in verdicts:
        received[key].append(verdict.event_id)
    assert received == sent
    digest = runtime.engine.ruleset.digest.encode()
    assert all(header_value(headers, RULESET_HEADER) == digest for _, _, headers in verdicts)
    # Everything was committed on the way out (the drain), per partition up to its end.
    committed = await committed_offsets(kafka_bootstrap, topics)
    assert sum(offset or 0 for offset in committed.values()) == len(records)


async def test_poison_records_go_to_the_dlq_and_the_loop_goes_on(kafka_bootstrap: str, topics: Topics) -> None:
    settings = topics.settings(kafka_bootstrap, max_record_bytes=4096)
    await ensure_topics(settings)
    good = SampleTraffic(seed=5, malformed_ratio=0.0).records(200)
    poison = [
        SampleRecord(b"chat-x", b"{not json", None),
        SampleRecord(b"chat-x", b'{"id": 1}', None),
        SampleRecord(b"chat-x", msgspec.json.encode({"id": "huge", "text": "x" * 10_000}), None),
    ]
    records = good[:100] + poison + good[100:]
    await produce(kafka_bootstrap, topics.input, records)
    processor = StreamProcessor(settings, Runtime.load(settings))
    task = asyncio.create_task(processor.run())
    try:
        verdicts = await read_topic(kafka_bootstrap, topics.output, len(good))
        letters = await read_topic(kafka_bootstrap, topics.dlq, len(poison))
    finally:
        processor.request_stop()
        await task
    assert len(verdicts) == len(good)
    by_value = {r.value: r for r in letters}  # type: ignore[attr-defined]
    assert set(by_value) == {p.value for p in poison}  # the original value, unchanged
    reasons = {p.value: header_value(by_value[p.value].headers, REASON_HEADER) for p in poison}
    assert list(reasons.values()) == [b"invalid_json", b"invalid_event", b"too_large"]
    for letter in letters:
        assert letter.key == b"chat-x"  # type: ignore[attr-defined]
        assert header_value(letter.headers, TOPIC_HEADER) == topics.input.encode()  # type: ignore[attr-defined]
        assert header_value(letter.headers, OFFSET_HEADER) is not None  # type: ignore[attr-defined]
