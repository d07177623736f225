"""Reliability fixtures: the stream tests' helpers and fixtures (`topics`, `service_factory`, `http_port`)
re-exported from tests/stream, plus a broker whose data survives restarts."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_STREAM_TESTS = Path(__file__).resolve().parents[1] / "stream"
if str(_STREAM_TESTS) not in sys.path:  # kafka_helpers lives there; pytest adds it only when it collects it
    sys.path.insert(0, str(_STREAM_TESTS))


def _stream_conftest() -> object:
    spec = importlib.util.spec_from_file_location("stream_conftest", _STREAM_TESTS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_stream = _stream_conftest()
topics = _stream.topics  # type: ignore[attr-defined]
service_factory = _stream.service_factory  # type: ignore[attr-defined]
http_port = _stream.http_port  # type: ignore[attr-defined]

from persistent_broker import PersistentBroker  # noqa: E402  # after the sys.path entry above


@pytest.fixture
def persistent_broker() -> Iterator[PersistentBroker]:
    with PersistentBroker() as broker:
        yield broker
