"""Pure stream functions: input records → (verdict records, dead letters). No Kafka, no clock.

`process_records` decodes each record (too large, not JSON, not a ChatEvent → dead letter),
classifies the decoded events as one batch, and encodes one verdict record per event (key = the
chat id, or the event id when the event has no chat), counting the verdicts as it goes (the tally
the metrics apply). If the engine raises on a batch, the events are classified one by one so that
only the event that fails is dead-lettered (`classify_error`). Outputs keep the input order, which
keeps each partition's order on the way out.

This runs for every event of the stream (~13 µs of a stream process's ~19 µs per event), so it
is one pass per batch: no per-event try, and a plain allow (no match: most events) is encoded
from a per-batch template. The engine decides such a verdict by `ruleset` at `now`, as allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, NamedTuple, Protocol

import msgspec

from service.counters.requests import encode_request, new_request
from service.engine.counting import Sighting
from service.errors import EventDecodeError
from service.events import ChatEvent, RulesetRef, Verdict, decode_event, encode_verdict, plain_allow_encoder
from service.stream.dead_letters import DeadLetter, DeadLetterReason, dead_letter
from service.verdict_counts import VerdictCounts, count_verdicts

RULESET_HEADER: Final = "redline-ruleset-digest"


class SourceRecord(Protocol):
    """What the pipeline reads of a consumed record (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class Classifier(Protocol):
    @property
    def ruleset(self) -> RulesetRef: ...
    @property
    def has_counters(self) -> bool: ...
    def classify(
        self, event: ChatEvent, now: datetime, counts: Mapping[str, int] | None = None,
        sightings: list[Sighting] | None = None,
    ) -> Verdict: ...


class VerdictRecord(NamedTuple):
    """One verdict to produce. A tuple: built per event and pickled back by the classify worker,
    where a frozen dataclass costs ~3× as much to build and to unpickle."""

    key: bytes
    value: bytes
    sent_at: float  # epoch seconds: the event's sent_at, else the input record's timestamp


@dataclass(slots=True)
class Decoded:
    events: list[ChatEvent] = field(default_factory=list)
    records: list[SourceRecord] = field(default_factory=list)  # the record of each event
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CounterRecord:
    """A counter request for the internal counter topic: key = the first sighting's state key."""

    key: bytes
    value: bytes


@dataclass(slots=True)
class Processed:
    verdict_records: list[VerdictRecord]
    tally: VerdictCounts  # of the verdicts in verdict_records (what the metrics count)
    dead_letters: list[DeadLetter]
    # Events a counter rule may hold for: their verdict comes from the last key's owner.
    counter_requests: list[CounterRecord] = field(default_factory=list)


def _to_dead_letter(record: SourceRecord, reason: DeadLetterReason, detail: str, max_value: int) -> DeadLetter:
    return dead_letter(
        key=record.key, value=record.value, headers=record.headers, reason=reason, detail=detail,
        topic=record.topic, partition=record.partition, offset=record.offset,
        timestamp_ms=record.timestamp, max_value_bytes=max_value,
    )


def decode_records(
    records: Iterable[SourceRecord], *, max_record_bytes: int, dead_letter_max_value_bytes: int
) -> Decoded:
    out = Decoded()
    for record in records:
        value = record.value
        if value is None:
            out.dead_letters.append(
                _to_dead_letter(record, "invalid_json", "record has no value", dead_letter_max_value_bytes)
            )
            continue
        if len(value) > max_record_bytes:
            detail = f"value of {len(value)} bytes exceeds max_record_bytes={max_record_bytes}"
            out.dead_letters.append(_to_dead_letter(record, "too_large", detail, dead_letter_max_value_bytes))
            continue
        try:
            event = decode_event(value)
        except EventDecodeError as exc:
            # Valid JSON of the wrong shape is a ValidationError; anything else is not JSON at all.
            reason: DeadLetterReason = (
                "invalid_event" if isinstance(exc.__cause__, msgspec.ValidationError) else "invalid_json"
            )
            out.dead_letters.append(_to_dead_letter(record, reason, str(exc), dead_letter_max_value_bytes))
            continue
        out.events.append(event)
        out.records.append(record)
    return out


def verdict_key(event: ChatEvent) -> bytes:
    """A verdict's record key: the chat id (a chat's verdicts stay in one partition), else the event id."""
    return (event.chat.id if event.chat is not None else event.id).encode()


def _classify_each(
    engine: Classifier, decoded: Decoded, now: datetime, dead_letter_max_value_bytes: int,
    sightings: list[list[Sighting]] | None = None,
) -> tuple[list[Verdict | None], list[DeadLetter]]:
    """One by one: a failing event is dead-lettered alone. With `sightings`, each event's
    sightings are appended there (one list per event, in order)."""
    verdicts: list[Verdict | None] = []
    dead: list[DeadLetter] = []
    for event, record in zip(decoded.events, decoded.records, strict=True):
        found: list[Sighting] = []
        if sightings is not None:
            sightings.append(found)
        try:
            verdicts.append(engine.classify(event, now, sightings=found if sightings is not None else None))
        except Exception as exc:  # one failing event must not stop the partition
            verdicts.append(None)
            detail = f"{type(exc).__name__}: {exc}"
            dead.append(_to_dead_letter(record, "classify_error", detail, dead_letter_max_value_bytes))
    return verdicts, dead


def classify_decoded(
    engine: Classifier, decoded: Decoded, now: datetime, *, dead_letter_max_value_bytes: int
) -> Processed:
    try:
        return _classify_all(engine, decoded, now)
    except Exception:  # find the culprit(s) one by one; the others still get verdicts
        sightings: list[list[Sighting]] | None = [] if engine.has_counters else None
        verdicts, failed = _classify_each(engine, decoded, now, dead_letter_max_value_bytes, sightings)
        outputs = _Outputs(engine.ruleset, now)
        for index, (event, record, verdict) in enumerate(zip(decoded.events, decoded.records, verdicts, strict=True)):
            if verdict is not None:
                outputs.add(event, record, verdict, sightings[index] if sightings is not None else None)
        return outputs.processed(decoded.dead_letters + failed)


def _classify_all(engine: Classifier, decoded: Decoded, now: datetime) -> Processed:
    """The whole batch in one pass; any exception ends it (classify_decoded then goes one by one)."""
    classify = engine.classify
    outputs = _Outputs(engine.ruleset, now)
    add = outputs.add
    if engine.has_counters:
        for event, record in zip(decoded.events, decoded.records, strict=True):
            found: list[Sighting] = []
            add(event, record, classify(event, now, None, found), found)
    else:
        for event, record in zip(decoded.events, decoded.records, strict=True):
            add(event, record, classify(event, now), None)
    return outputs.processed(decoded.dead_letters)


class _Outputs:
    """A batch's verdict records, counter requests and tally, built event by event in input order."""

    __slots__ = ("_encode_allow", "counter_requests", "matched", "plain_allows", "records")

    def __init__(self, ruleset: RulesetRef, now: datetime) -> None:
        self.records: list[VerdictRecord] = []
        self.counter_requests: list[CounterRecord] = []
        self.matched: list[Verdict] = []  # verdicts with matches; the others are plain allows
        self.plain_allows = 0
        self._encode_allow = plain_allow_encoder(ruleset, now)

    def add(self, event: ChatEvent, record: SourceRecord, verdict: Verdict, found: list[Sighting] | None) -> None:
        sent = event.sent_at
        sent_at = sent.timestamp() if sent is not None else record.timestamp / 1000
        if found:  # a counter rule may hold: the verdict comes from the last key's owner
            source = f"{record.topic}/{record.partition}/{record.offset}"
            request = new_request(record.value or b"", found, source, sent_at)
            self.counter_requests.append(CounterRecord(found[0].state_key.encode(), encode_request(request)))
            return
        key = verdict_key(event)
        if verdict.matches:
            self.matched.append(verdict)
            value = encode_verdict(verdict)
        else:  # most events: allow, no match, this batch's pack and time (plain_allow_encoder)
            self.plain_allows += 1
            value = self._encode_allow(event.id)
        self.records.append(VerdictRecord(key, value, sent_at))

    def processed(self, dead_letters: list[DeadLetter]) -> Processed:
        return Processed(verdict_records=self.records, tally=count_verdicts(self.matched, self.plain_allows),
                         dead_letters=dead_letters, counter_requests=self.counter_requests)


def process_records(
    engine: Classifier,
    records: Iterable[SourceRecord],
    now: datetime,
    *,
    max_record_bytes: int,
    dead_letter_max_value_bytes: int,
) -> Processed:
    decoded = decode_records(
        records, max_record_bytes=max_record_bytes, dead_letter_max_value_bytes=dead_letter_max_value_bytes
    )
    return classify_decoded(engine, decoded, now, dead_letter_max_value_bytes=dead_letter_max_value_bytes)


def ruleset_headers(ruleset: RulesetRef) -> list[tuple[str, bytes]]:
    return [(RULESET_HEADER, ruleset.digest.encode())]
