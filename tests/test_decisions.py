"""The loops' one call into the engine: one outcome per event, counts per event, and an event the
engine fails on dead-lettered alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from service.decisions import decide
from service.engine.classifier import Engine, Outcome
from service.events import Chat, ChatEvent, RulesetRef, Sender
from service.kafka.dead_letters import dead_lettering
from service.rules.loader import load_pack
from tests.kafka_helpers import REPO

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Record:
    offset: int
    value: bytes | None = b"{}"
    key: bytes | None = None
    topic: str = "in"
    partition: int = 0
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Recording:
    """The real engine, remembering the counts each event was evaluated with and how many batch
    calls were made; fails on one id, one by one and in a batch."""

    inner: Engine
    failing: str
    seen: list[Mapping[str, int] | None]
    batches: int = 0

    @property
    def ruleset(self) -> RulesetRef:
        return self.inner.ruleset

    def evaluate(self, event: ChatEvent, now: datetime, counts: Mapping[str, int] | None = None) -> Outcome:
        if event.id == self.failing:
            raise RuntimeError("engine bug")
        self.seen.append(counts)
        return self.inner.evaluate(event, now, counts)

    def evaluate_batch(
        self, events: Sequence[ChatEvent], now: datetime, counts: Sequence[Mapping[str, int] | None] | None = None
    ) -> list[Outcome]:
        self.batches += 1
        if any(event.id == self.failing for event in events):
            raise RuntimeError("engine bug")
        self.seen.extend(counts or [None] * len(events))
        return self.inner.evaluate_batch(events, now, counts)


def test_each_event_gets_its_outcome_and_its_counts_and_a_failure_is_a_dead_letter() -> None:
    engine = Recording(load_pack(REPO / "tests" / "packs" / "counters"), "b", [])
    events = [ChatEvent(id=i, text="网传明天停水，速转", chat=Chat("c1"), sender=Sender("s1")) for i in ("a", "b", "c")]
    counts = [{"k": 1}, {"k": 2}, {"k": 3}]
    outcomes, failed = decide(engine, events, [Record(0), Record(1), Record(2)], NOW, dead_lettering(1024), counts)
    assert [o.verdict.event_id if o else None for o in outcomes] == ["a", None, "c"]
    assert engine.seen == [{"k": 1}, {"k": 3}]
    [letter] = failed
    assert (letter.reason, dict(letter.headers)["redline-source-offset"]) == ("classify_error", b"1")
    assert dict(letter.headers)["redline-dlq-detail"] == b"RuntimeError: engine bug"
    assert engine.batches == 1  # tried as one batch, then event by event to find the failing one
    # Without counts, what to count comes back with the verdict (the stream's first pass).
    plain, _ = decide(engine.inner, events[:1], [Record(0)], NOW, dead_lettering(1024))
    assert plain[0] is not None and plain[0].sightings


def test_a_batch_is_decided_in_one_engine_call() -> None:
    engine = Recording(load_pack(REPO / "tests" / "packs" / "counters"), "none", [])
    events = [ChatEvent(id=str(i), text="网传明天停水，速转", chat=Chat("c1"), sender=Sender("s1")) for i in range(5)]
    outcomes, failed = decide(engine, events, [Record(i) for i in range(5)], NOW, dead_lettering(1024))
    assert (engine.batches, failed) == (1, [])
    assert outcomes == [engine.inner.evaluate(event, NOW) for event in events]
