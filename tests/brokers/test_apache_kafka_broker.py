"""The Apache Kafka fixture itself: restarts keep the log, stops are bounded, failures say why."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .apache_kafka import ApacheKafka, BrokerStartError
from .clients import create_topic, read_topic, unique
from .plugin import ApacheKafkaFactory

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """This module's broker: its tests restart and finally freeze it, so it is not the session's."""
    factory = ApacheKafkaFactory(tmp_path_factory.mktemp("own-kafka"))
    broker = factory()
    broker.start()
    try:
        yield broker
    finally:
        factory.stop_all()


async def _state(bootstrap: str, topic: str, group: str) -> tuple[list[tuple[int, int, bytes | None]], dict[int, int]]:
    """What must survive a restart: the committed records as read_committed sees them, and the group's offsets."""
    records = await read_topic(bootstrap, topic, 2)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        committed = {p: await consumer.committed(TopicPartition(topic, p)) or -1 for p in (0, 1)}
    finally:
        await consumer.stop()
    return [(r.partition, r.offset, r.value) for r in records], committed


async def _state_once_loaded(
    bootstrap: str, topic: str, group: str, expected: tuple[list[tuple[int, int, bytes | None]], dict[int, int]]
) -> tuple[list[tuple[int, int, bytes | None]], dict[int, int]]:
    """The state after a restart, read again while the broker is still loading its logs and its group
    coordinator (a fresh broker can answer "no committed offset" for a moment): the last reading."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        found = await _state(bootstrap, topic, group)
        if found == expected or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.5)  # the coordinator's load has no event a client can await


async def test_restarts_keep_records_group_offsets_and_transactions(own_kafka: ApacheKafka) -> None:
    kafka = own_kafka
    topic, group = unique("restart"), unique("restart-group")
    await create_topic(kafka.bootstrap, topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(40):
            await producer.send(topic, f"plain-{i}".encode(), partition=i % 2)
        await producer.flush()
    finally:
        await producer.stop()
    transactional = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=unique("restart-tx"))
    await transactional.start()
    try:
        async with transactional.transaction():
            for i in range(6):
                await transactional.send(topic, f"committed-{i}".encode(), partition=i % 2)
        await transactional.begin_transaction()
        for i in range(4):
            await transactional.send(topic, f"aborted-{i}".encode(), partition=i % 2)
        await transactional.abort_transaction()
    finally:
        await transactional.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])  # aiokafka commits only what it holds
        await consumer.commit({TopicPartition(topic, 0): 7, TopicPartition(topic, 1): 11})
    finally:
        await consumer.stop()

    before = await _state(kafka.bootstrap, topic, group)
    values = [value for _, _, value in before[0]]
    assert len(values) == 46 and not any(v.startswith(b"aborted") for v in values if v is not None)
    assert before[1] == {0: 7, 1: 11}

    start_seconds = {}
    for kill in (True, False):  # a crash (no flush, no controlled shutdown), then a clean stop
        await asyncio.to_thread(kafka.restart, kill=kill)
        start_seconds["SIGKILL" if kill else "SIGTERM"] = kafka.last_start_seconds
        assert await _state_once_loaded(kafka.bootstrap, topic, group, before) == before, (
            f"state changed across restart(kill={kill})"
        )

    log = kafka.log_path.read_text()
    assert log.count("Kafka Server started") == 3
    assert "SIGKILL" in log and "SIGTERM" in log  # the fixture's own markers, between the broker's lines
    print("\nApache Kafka answering again after " + ", ".join(f"{how}: {seconds:.1f} s"
                                                           for how, seconds in start_seconds.items()))


def test_a_broker_ignoring_sigterm_is_killed_after_the_bound(own_kafka: ApacheKafka) -> None:
    pid = own_kafka.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # frozen: SIGTERM stays pending, only SIGKILL ends it
    started = time.monotonic()
    own_kafka.stop(timeout_seconds=1.0)
    assert time.monotonic() - started < 10
    assert own_kafka.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "SIGKILL" in own_kafka.log_path.read_text().splitlines()[-1]


def test_a_broker_that_cannot_start_says_why(apache_kafka_factory: ApacheKafkaFactory) -> None:
    broker = apache_kafka_factory(properties={"num.io.threads": "several"})
    with pytest.raises(BrokerStartError, match=r"(?s)formatting .* failed.*num\.io\.threads"):
        broker.start(timeout_seconds=60)
    assert broker.pid is None


def test_a_failing_test_shows_the_broker_log(tmp_path: Path) -> None:
    """The report hook attaches the broker's log to a failing test (run here in a pytest of its own,
    with a broker object whose log is written by hand: no JVM is needed to check the report)."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        from brokers.plugin import pytest_runtest_makereport
    """))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import pytest
        from brokers.apache_kafka import ApacheKafka

        @pytest.fixture
        def kafka(tmp_path):
            broker = ApacheKafka(tmp_path)
            broker.log_path.write_text("first line\\nTHE-BROKER-SAID-THIS\\n")
            return broker

        def test_fails(kafka):
            assert False

        def test_passes(kafka):
            pass
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(TESTS)}, check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert result.stdout.count("THE-BROKER-SAID-THIS") == 1, result.stdout  # the failing test's report only
    assert "Apache Kafka log, last 80 lines" in result.stdout
