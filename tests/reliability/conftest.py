"""Reliability fixtures: a broker whose data survives restarts (the stream's fixtures are the
suite's: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.persistent_broker import PersistentBroker


@pytest.fixture
def persistent_broker() -> Iterator[PersistentBroker]:
    with PersistentBroker() as broker:
        yield broker
