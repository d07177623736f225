"""The engine is total over its input: a sent_at beyond datetime's range in UTC does not raise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.engine.classifier import Engine
from service.events import ChatEvent


@pytest.mark.parametrize(
    "sent_at",
    [
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
        datetime(1, 1, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=23, minutes=59))),
    ],
)
def test_out_of_range_time_reads_as_the_range_end(mini_engine: Engine, sent_at: datetime) -> None:
    # The doors refuse such an event (service/admission.py); a caller that skips them gets a verdict.
    event = ChatEvent(id="t", text="这是机密", sent_at=sent_at)
    verdict = mini_engine.classify(event, datetime(2026, 1, 1, tzinfo=UTC))
    assert verdict.action == "block"
