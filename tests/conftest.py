"""Session fixtures shared by the whole suite: real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.embedded_broker import EmbeddedBroker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A tansu broker (memory storage) for the session; tests isolate themselves by topic names."""
    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
