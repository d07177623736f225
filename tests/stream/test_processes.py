"""`redline serve` processes against the real brokers: kill -9 and restart, two members, SIGTERM drain.

On tansu (at_least_once) nothing may be missing and duplicates are bounded; on Apache Kafka with
exactly_once a read_committed reader must find every verdict exactly once."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from service.embedded_broker import free_port
from service.events import decode_event, decode_verdict
from service.sample_traffic import SampleTraffic
from tests.kafka_helpers import (
    OPEN_TRANSACTIONS,
    STREAM_ASSIGNED,
    StartService,
    StreamBroker,
    Topics,
    aborted_records,
    assignment_of,
    explain_missing,
    freeze_in_open_transaction,
    produce,
    produce_paced,
    read_to_end,
    read_topic,
    read_verdict_ids,
)

SMALL_BATCHES = {"REDLINE_BATCH_MAX_RECORDS": "200"}
TINY_BATCHES = {"REDLINE_BATCH_MAX_RECORDS": "50", "REDLINE_MAX_IN_FLIGHT_BATCHES": "2"}


def event_ids(records: list[object]) -> set[str]:
    return {r.event_id for r in records if r.event_id is not None}  # type: ignore[attr-defined]


async def verdict_counts(broker: StreamBroker, topic: str) -> Counter[str]:
    """Verdicts per event id in the whole topic: call once every service has stopped."""
    return Counter(decode_verdict(r.value).event_id for r in await read_to_end(broker, topic))


async def test_kill_9_mid_stream_then_restart_leaves_no_event_without_verdict(
    broker: StreamBroker, topics: Topics, service_factory: StartService
) -> None:
    records = SampleTraffic(seed=21, malformed_ratio=0.0).records(30_000)
    # Batches of 50, two in flight: each waits for its acks (~10 ms), which bounds the service to a
    # few thousand events/s however fast it classifies, so the kill lands mid-stream with batches
    # in flight (with batches of 200 a faster engine once finished all 30,000 before the kill).
    env = topics.env(broker, free_port(), **TINY_BATCHES, **OPEN_TRANSACTIONS)
    first = service_factory(env)
    first.wait_for_log(STREAM_ASSIGNED)
    await produce(broker, topics.input, records)  # faster than the service consumes
    await read_topic(broker, topics.output, 2000)  # the stream is flowing
    assert first.process is not None
    if broker.exactly_once:  # it owns every partition
        await freeze_in_open_transaction(first.process.pid, broker, topics.output, [0, 1, 2, 3])
    first.process.kill()  # SIGKILL: no drain, no commit, no goodbye
    assert first.wait() == -signal.SIGKILL
    before_restart = await read_topic(broker, topics.output, len(records), timeout_seconds=1)
    assert len(before_restart) < len(records), "the service finished before the kill: not mid-stream"
    second = service_factory({**env, "REDLINE_HTTP_PORT": str(free_port())})
    seen = await read_verdict_ids(broker, topics.output, event_ids(records))
    assert event_ids(records) - set(seen) == set()
    duplicates = sum(n - 1 for n in Counter(seen).values())
    # Bounded by what was in flight and uncommitted at the kill (a few tiny batches per partition).
    assert duplicates <= 4 * 200 * 4 + 2000
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.log_tail()
    aborted = 0
    if broker.exactly_once:  # the killed member's open transactions were aborted, never read
        counts = await verdict_counts(broker, topics.output)
        duplicates = sum(n - 1 for n in counts.values())
        assert set(counts) == event_ids(records) and duplicates == 0
        aborted = await aborted_records(broker, topics.output)
        assert aborted > 0, "the kill struck no open transaction: nothing was proved"
    print(f"\nkill -9 ({broker}): {len(records)} events, {len(before_restart)} verdicts before the restart, "
          f"{duplicates} duplicate verdicts, {aborted} verdicts aborted with the killed member's transactions")


async def test_two_members_share_partitions_and_the_survivor_takes_over(
    broker: StreamBroker, topics: Topics, service_factory: StartService
) -> None:
    first = service_factory(topics.env(broker, free_port(), **SMALL_BATCHES, **OPEN_TRANSACTIONS))
    assert assignment_of(first.wait_for_log(STREAM_ASSIGNED)) == [0, 1, 2, 3]
    second = service_factory(topics.env(broker, free_port(), **SMALL_BATCHES, **OPEN_TRANSACTIONS))
    second_share = assignment_of(second.wait_for_log(STREAM_ASSIGNED))
    while True:  # the first member is revoked and assigned again in the same rebalance
        first_share = assignment_of(first.wait_for_log(STREAM_ASSIGNED))
        if len(first_share) < 4:
            break
    assert sorted(first_share + second_share) == [0, 1, 2, 3]
    assert first_share
    assert second_share

    records = SampleTraffic(seed=22, malformed_ratio=0.0).records(8000)
    producing = asyncio.create_task(produce_paced(broker, topics.input, records))
    await read_topic(broker, topics.output, 1500)
    assert first.process is not None
    if broker.exactly_once:
        await freeze_in_open_transaction(first.process.pid, broker, topics.output, first_share)
    first.process.kill()
    first.wait()
    # After the dead member's session times out, the survivor owns every partition.
    while assignment_of(second.wait_for_log(STREAM_ASSIGNED)) != [0, 1, 2, 3]:
        pass
    await producing
    seen = await read_verdict_ids(broker, topics.output, event_ids(records))
    assert event_ids(records) - set(seen) == set()
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.log_tail()
    if broker.exactly_once:
        counts = await verdict_counts(broker, topics.output)
        assert set(counts) == event_ids(records) and max(counts.values()) == 1
        assert await aborted_records(broker, topics.output) > 0, "the kill struck no open transaction"


async def test_sigterm_drains_commits_and_exits_zero(
    broker: StreamBroker, topics: Topics, service_factory: StartService
) -> None:
    records = SampleTraffic(seed=23, malformed_ratio=0.0).records(10_000)
    service = service_factory(topics.env(broker, free_port(), **SMALL_BATCHES))
    service.wait_for_log(STREAM_ASSIGNED)
    producing = asyncio.create_task(produce_paced(broker, topics.input, records))
    await read_topic(broker, topics.output, 2000)
    service.signal(signal.SIGTERM)
    assert '"complete": true' in service.wait_for_log("stream drained")
    assert service.wait(timeout_seconds=20) == 0, service.log_tail()
    await producing

    # Every record below a committed offset has its verdict: a commit never runs ahead of the acks.
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=topics.group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        committed = {p: await consumer.committed(TopicPartition(topics.input, p)) or 0 for p in range(4)}
    finally:
        await consumer.stop()
    inputs = await read_topic(broker, topics.input, len(records))
    covered = {
        decode_event(r.value).id for r in inputs  # type: ignore[attr-defined]
        if r.offset < committed[r.partition]  # type: ignore[attr-defined]
    }
    assert covered, "nothing was committed before the drain"
    seen = await read_verdict_ids(broker, topics.output, covered, timeout_seconds=10)
    assert covered - set(seen) == set()
    if broker.exactly_once:
        # Verdicts and offsets commit together: what a read_committed reader sees is exactly the
        # records below the committed offsets, each once.
        counts = await verdict_counts(broker, topics.output)
        assert set(counts) == covered and max(counts.values()) == 1


@pytest.mark.parametrize("broker", ["kafka-eos"], indirect=True)
async def test_a_frozen_member_comes_back_as_a_zombie_and_is_fenced(
    broker: StreamBroker, topics: Topics, service_factory: StartService
) -> None:
    """A member frozen (SIGSTOP) past its session is a zombie when it thaws: the group gave its
    partitions to the other member, whose producers' inits aborted its open transactions and fenced
    its producers. It learns so from its next commit (ProducerFenced) and its next heartbeat, and
    nothing it decided before or after the freeze is read twice."""
    records = SampleTraffic(seed=24, malformed_ratio=0.0).records(20_000)
    zombie = service_factory(topics.env(broker, free_port(), **TINY_BATCHES, **OPEN_TRANSACTIONS))
    assert assignment_of(zombie.wait_for_log(STREAM_ASSIGNED)) == [0, 1, 2, 3]
    other = service_factory(topics.env(broker, free_port(), **TINY_BATCHES, **OPEN_TRANSACTIONS))
    other.wait_for_log(STREAM_ASSIGNED)
    zombie_share = assignment_of(zombie.wait_for_log(STREAM_ASSIGNED))  # the rebalance's, in its share
    assert 0 < len(zombie_share) < 4
    producing = asyncio.create_task(produce_paced(broker, topics.input, records))
    await read_topic(broker, topics.output, 2000)  # both are flowing
    assert zombie.process is not None
    frozen_open = await freeze_in_open_transaction(zombie.process.pid, broker, topics.output, zombie_share)
    try:
        # Its session (3 s) expires: the other member takes every partition.
        while assignment_of(other.wait_for_log(STREAM_ASSIGNED)) != [0, 1, 2, 3]:
            pass
        await asyncio.sleep(1.0)  # the other member's transactions go on meanwhile
    finally:
        zombie.signal(signal.SIGCONT)
    zombie.wait_for_log("transaction failed")  # its first commit after the thaw: fenced
    await producing
    seen = await read_verdict_ids(broker, topics.output, event_ids(records))

    def logs() -> str:  # what each member did around the freeze, for a failure message
        return "".join(f"\n--- {name}:\n{service.log_tail(200)}" for name, service in
                       (("zombie", zombie), ("other", other)))

    missing = event_ids(records) - set(seen)
    assert missing == set(), await explain_missing(broker, topics, missing) + logs()
    for service in (zombie, other):
        service.signal(signal.SIGTERM)
        assert service.wait() == 0, service.log_tail()
    counts = await verdict_counts(broker, topics.output)
    assert set(counts) == event_ids(records) and max(counts.values()) == 1
    aborted = await aborted_records(broker, topics.output)
    assert aborted > 0, logs()
    print(f"\nzombie fenced: {len(records)} events, each verdict once; frozen with {frozen_open} verdicts in "
          f"open transactions, {aborted} verdicts aborted")
