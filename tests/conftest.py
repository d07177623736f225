"""Session fixtures shared by the whole suite: real servers on free loopback ports, per-test
topics on the session broker and `redline serve` subprocesses (tests/kafka_helpers.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from service.embedded_broker import EmbeddedBroker, free_port
from tests.kafka_helpers import ServiceProcess, Topics


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A tansu broker (memory storage) for the session; tests isolate themselves by topic names."""
    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


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
