"""Sample traffic: seeded, mostly valid, every event type."""

from __future__ import annotations

from datetime import UTC, datetime

from service.events import decode_event
from service.sample_traffic import SampleTraffic

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def test_sample_traffic_is_seeded_and_mostly_valid() -> None:
    first = SampleTraffic(seed=3).records(2000, NOW)
    assert first == SampleTraffic(seed=3).records(2000, NOW)
    malformed = [r for r in first if r.event_id is None]
    assert 0.01 < len(malformed) / len(first) < 0.06
    for record in first:
        if record.event_id is not None:
            assert decode_event(record.value).id == record.event_id
    kinds = {decode_event(r.value).type for r in first if r.event_id}
    assert kinds == {"text", "image", "video", "red_packet", "transfer", "file", "link"}
