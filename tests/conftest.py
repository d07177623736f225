"""Session fixtures shared by the whole suite: real servers on free loopback ports, the brokers the
stream suites run on, per-test topics and `redline serve` subprocesses (tests/kafka_helpers.py).

Brokers: `kafka_bootstrap` is a tansu broker for the session; `apache_kafka` an Apache Kafka for the
session (tests/brokers/plugin.py: every security listener; skipped without Java and Maven outside
CI). The `broker` fixture runs a stream test on each broker a suite asks for, with the delivery
Redline uses there (tests/kafka_helpers.StreamBroker):

    tansu       tansu, at_least_once (it has no transactions)
    kafka-eos   Apache Kafka, exactly_once
    kafka-alo   Apache Kafka, at_least_once (the default delivery, on the broker production runs)

By default a test taking `broker` runs on `tansu` and `kafka-eos`;
`@pytest.mark.parametrize("broker", [...], indirect=True)` picks others.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from service.embedded_broker import EmbeddedBroker, free_port
from tests.brokers.plugin import (  # noqa: F401  # fixtures and the hook that attaches broker logs
    apache_kafka,
    apache_kafka_factory,
    pytest_runtest_makereport,
    tansu_broker,
    tls_files,
)
from tests.kafka_helpers import ServiceProcess, StreamBroker, Topics

BROKERS = {
    # id: (broker fixture, delivery)
    "tansu": ("kafka_bootstrap", "at_least_once"),
    "kafka-eos": ("apache_kafka", "exactly_once"),
    "kafka-alo": ("apache_kafka", "at_least_once"),
}


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A tansu broker (memory storage) for the session; tests isolate themselves by topic names."""
    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(params=["tansu", "kafka-eos"])
def broker(request: pytest.FixtureRequest) -> StreamBroker:
    fixture, delivery = BROKERS[request.param]
    found = request.getfixturevalue(fixture)
    if fixture == "kafka_bootstrap":
        return StreamBroker("tansu", found, delivery)
    return StreamBroker("apache-kafka", found.bootstrap, delivery)


@pytest.fixture
def topics() -> Topics:
    run = uuid.uuid4().hex[:8]
    return Topics(f"events-{run}", f"verdicts-{run}", f"dlq-{run}", f"redline-{run}")


@pytest.fixture
def service_factory() -> Iterator[Callable[[dict[str, str]], ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess(env).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def http_port() -> int:
    return free_port()
