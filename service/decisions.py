"""How the Kafka loops decide events and key their verdicts: the stream's first pass and the
counter owner's last hop both call the engine here, and only here.

`decide` gives one `Outcome` per event, from one engine batch call for the events it is given
(Engine.evaluate_batch: the outcome of each event as if decided alone). An event the engine fails
on becomes a dead letter through the loop's policy (`classify_error`) and the others still get
their outcome: when the batch call fails, the events are decided again one by one to find which,
so one failing event never stops its partition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import repeat
from typing import Final, Protocol

from service.engine.classifier import Outcome
from service.events import ChatEvent, RulesetRef
from service.kafka.dead_letters import DeadLetter, DeadLettering
from service.kafka.records import SourceRecord

RULESET_HEADER: Final = "redline-ruleset-digest"


class Evaluator(Protocol):
    """What the loops use of an `Engine`."""

    @property
    def ruleset(self) -> RulesetRef: ...
    def evaluate(self, event: ChatEvent, now: datetime, counts: Mapping[str, int] | None = None) -> Outcome: ...
    def evaluate_batch(
        self, events: Sequence[ChatEvent], now: datetime, counts: Sequence[Mapping[str, int] | None] | None = None
    ) -> list[Outcome]: ...


def decide(
    engine: Evaluator,
    events: Sequence[ChatEvent],
    records: Sequence[SourceRecord],
    now: datetime,
    dead_lettering: DeadLettering,
    counts: Sequence[Mapping[str, int]] | None = None,
) -> tuple[list[Outcome | None], list[DeadLetter]]:
    """Each event's outcome (None for an event that failed) and the failed events' dead letters.
    `records[i]` is the record `events[i]` came in; `counts[i]` its counts, when counted."""
    try:
        return list[Outcome | None](engine.evaluate_batch(events, now, counts)), []
    except Exception:  # some event failed the batch: found below, event by event
        pass
    evaluate = engine.evaluate
    outcomes: list[Outcome | None] = []
    failed: list[DeadLetter] = []
    for event, event_counts in zip(events, repeat(None) if counts is None else counts, strict=False):
        try:
            outcomes.append(evaluate(event, now, event_counts))
        except Exception as exc:  # the loops' one guard around the engine (module docstring)
            failed.append(dead_lettering(records[len(outcomes)], "classify_error", f"{type(exc).__name__}: {exc}"))
            outcomes.append(None)
    return outcomes, failed


def verdict_key(event: ChatEvent) -> bytes:
    """A verdict's record key: the chat id (a chat's verdicts stay in one partition), else the event id."""
    return (event.chat.id if event.chat is not None else event.id).encode()


def ruleset_headers(ruleset: RulesetRef) -> list[tuple[str, bytes]]:
    """A verdict record's headers: the digest of the pack that decided it."""
    return [(RULESET_HEADER, ruleset.digest.encode())]
