"""Both broker kinds through one `Broker` protocol, and the flags that tell them apart saying the truth."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from .broker import Broker, TansuBroker
from .clients import create_topic, read_topic, unique


@pytest.fixture(params=["tansu", "apache-kafka"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """The shape a suite parametrised over both kinds takes: one fixture per kind, chosen by name."""
    fixture = {"tansu": "tansu_broker", "apache-kafka": "apache_kafka"}[request.param]
    value: Broker = request.getfixturevalue(fixture)
    return value


async def test_both_kinds_round_trip_through_the_protocol(broker: Broker) -> None:
    assert isinstance(broker, Broker)
    topic = unique(f"kinds-{broker.kind}")
    await create_topic(broker.bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"chat")
    finally:
        await producer.stop()
    assert [(r.key, r.value) for r in await read_topic(broker.bootstrap, topic)] == [(b"chat", b"hello")]


async def test_supports_transactions_says_whether_a_transactional_producer_starts(broker: Broker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("kinds"))
    try:
        if broker.supports_transactions:
            await asyncio.wait_for(producer.start(), 30)
        else:
            with pytest.raises(KafkaError):  # tansu: InitProducerId v0 is refused
                await asyncio.wait_for(producer.start(), 30)
    finally:
        await producer.stop()


async def test_tansu_restarts_empty(tansu_broker: TansuBroker) -> None:
    """`keeps_data_on_restart` is False for tansu's memory storage (Apache Kafka's restart test is in
    test_apache_kafka_broker.py): the topic is gone after a crash and restart on the same port."""
    assert not tansu_broker.keeps_data_on_restart
    topic = unique("tansu-restart")
    await create_topic(tansu_broker.bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=tansu_broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"lost")
    finally:
        await producer.stop()
    await asyncio.to_thread(tansu_broker.restart, kill=True)
    await create_topic(tansu_broker.bootstrap, topic)  # would fail with TopicAlreadyExists had it survived
    assert await read_topic(tansu_broker.bootstrap, topic) == []
