"""Stream fixtures: per-test topics on the session broker and `redline serve` subprocesses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka_helpers import ServiceProcess, Topics

from service.embedded_broker import free_port


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
