"""HTTP verdicts are counted in small batches: by size, after a delay, and on every scrape."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from service import metrics
from service.api.verdict_tally import VerdictTally
from service.events import RulesetRef, Verdict
from service.verdict_counts import VerdictCounts


async def test_verdict_tally_flushes_by_size_by_time_and_on_demand(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[int] = []
    flushed = asyncio.Event()

    def record(counts: VerdictCounts, source: str) -> None:
        assert source == "http"
        recorded.append(counts.total)
        flushed.set()

    monkeypatch.setattr(metrics, "record_counts", record)
    verdict = Verdict("e", "allow", "none", (), RulesetRef("p", "1", "d"), datetime.now(UTC))
    tally = VerdictTally(max_pending=3, max_delay_seconds=0.01)
    tally.add_many([verdict, verdict, verdict])  # full: counted at once
    assert recorded == [3]
    flushed.clear()
    tally.add(verdict)  # one: counted when the delay has passed
    await asyncio.wait_for(flushed.wait(), timeout=5)
    assert recorded == [3, 1]
    tally.add(verdict)
    tally.add(verdict)
    tally.flush()  # what a scrape does
    assert recorded == [3, 1, 2]
    tally.flush()  # nothing pending: nothing recorded
    assert recorded == [3, 1, 2]
