"""Pure stream functions: input records → verdict records, counter requests and dead letters.
No Kafka client, no clock.

`decode_records` turns each record into a ChatEvent or a dead letter (too large, not JSON, not a
ChatEvent); `classify_decoded` has the engine decide the events (service.decisions: an event the
engine fails on is a dead letter, the others go on) and encodes one verdict record per event
(key = the chat id, or the event id when the event has no chat), counting the verdicts as it goes
(the tally the metrics apply). An event a counter rule may hold for goes to the counter topic
instead: its verdict comes from the owner of its last counter key (service.counters). Outputs keep
the input order, which keeps each partition's order on the way out.

This runs for every event of the stream (most of a stream process's CPU): the engine decides a
slice of events in one batch call (service.decisions), and a plain allow (no match: most events)
is encoded from a per-batch template: the engine decides such a verdict by `ruleset` at `now`, as
allow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from service.admission import EventLimits, refusal
from service.batches import slices_by_chars
from service.counter_requests import encode_request, new_request
from service.decisions import Evaluator, decide, ruleset_headers, verdict_key
from service.errors import EventDecodeError
from service.events import ChatEvent, Verdict, decode_event_noting, encode_verdict, plain_allow_encoder
from service.kafka.dead_letters import DeadLetter, DeadLettering, DeadLetterReason
from service.kafka.records import Item, SourceRecord
from service.verdict_counts import VerdictCounts, count_verdicts


@dataclass(slots=True)
class Decoded:
    events: list[ChatEvent] = field(default_factory=list)
    records: list[SourceRecord] = field(default_factory=list)  # the record of each event
    dead_letters: list[DeadLetter] = field(default_factory=list)
    unknown_fields: int = 0  # events accepted with fields the contract does not know (counted)

    def slices(self, max_chars: int) -> list[Decoded]:
        """The events in consecutive slices of at most `max_chars` scanned characters each (service
        .batches; the first slice keeps the dead letters): one engine batch call each, what a
        stream process classifies between two yields."""
        out = [
            Decoded(self.events[part.start : part.stop], self.records[part.start : part.stop])
            for part in slices_by_chars(self.events, max_chars)
        ]
        out[0].dead_letters = self.dead_letters
        out[0].unknown_fields = self.unknown_fields
        return out


@dataclass(slots=True)
class Processed:
    verdicts: list[Item]  # (key, verdict JSON, ruleset headers) for the output topic, in input order
    sent_at: list[float]  # per verdict, epoch seconds: the event's sent_at, else its record's timestamp
    tally: VerdictCounts  # of the verdicts (what the metrics count)
    dead_letters: list[DeadLetter]
    # Events a counter rule may hold for, for the counter topic: (the first key to count, request).
    counter_requests: list[Item]


def decode_records(
    records: Iterable[SourceRecord],
    *,
    max_record_bytes: int,
    dead_lettering: DeadLettering,
    limits: EventLimits | None = None,
) -> Decoded:
    """Each record's event, or its dead letter: no value, too large, not JSON, not a ChatEvent, or
    over the per-event limits every door applies (service/admission.py: `too_large` for a field
    over its size, `invalid_event` for a time out of range). Unknown fields are accepted (a newer
    chat backend may send them) and counted."""
    out = Decoded()
    for record in records:
        value = record.value
        if value is None:
            out.dead_letters.append(dead_lettering(record, "invalid_json", "record has no value"))
            continue
        if len(value) > max_record_bytes:
            detail = f"value of {len(value)} bytes exceeds max_record_bytes={max_record_bytes}"
            out.dead_letters.append(dead_lettering(record, "too_large", detail))
            continue
        try:
            event, unknown = decode_event_noting(value)
        except EventDecodeError as exc:
            # Valid JSON of the wrong shape is a ValidationError; anything else is not JSON at all.
            reason: DeadLetterReason = (
                "invalid_event" if isinstance(exc.__cause__, msgspec.ValidationError) else "invalid_json"
            )
            out.dead_letters.append(dead_lettering(record, reason, str(exc)))
            continue
        if limits is not None and (refused := refusal(event, limits)) is not None:
            reason = "invalid_event" if refused.path == "$.sent_at" else "too_large"
            out.dead_letters.append(dead_lettering(record, reason, f"{refused.message} - at `{refused.path}`"))
            continue
        out.unknown_fields += unknown
        out.events.append(event)
        out.records.append(record)
    return out


def classify_decoded(engine: Evaluator, decoded: Decoded, now: datetime, *, dead_lettering: DeadLettering) -> Processed:
    outcomes, failed = decide(engine, decoded.events, decoded.records, now, dead_lettering)
    headers = ruleset_headers(engine.ruleset)
    encode_allow = plain_allow_encoder(engine.ruleset, now)
    verdicts: list[Item] = []
    sent_ats: list[float] = []
    counter_requests: list[Item] = []
    matched: list[Verdict] = []  # verdicts with matches; the others are plain allows
    for event, record, outcome in zip(decoded.events, decoded.records, outcomes, strict=True):
        if outcome is None:  # dead-lettered by decide()
            continue
        sent = event.sent_at
        sent_at = sent.timestamp() if sent is not None else record.timestamp / 1000
        sightings = outcome.sightings
        if sightings:  # a counter rule may hold: the verdict comes from the last key's owner
            source = f"{record.topic}/{record.partition}/{record.offset}"
            request = new_request(record.value or b"", sightings, source, sent_at)
            counter_requests.append((sightings[0].state_key.encode(), encode_request(request), []))
            continue
        verdict = outcome.verdict
        if verdict.matches:
            matched.append(verdict)
            value = encode_verdict(verdict)
        else:  # most events: allow, no match, this batch's pack and time (plain_allow_encoder)
            value = encode_allow(event.id)
        verdicts.append((verdict_key(event), value, headers))
        sent_ats.append(sent_at)
    tally = count_verdicts(matched, len(verdicts) - len(matched))
    return Processed(verdicts, sent_ats, tally, decoded.dead_letters + failed, counter_requests)


def process_records(
    engine: Evaluator,
    records: Iterable[SourceRecord],
    now: datetime,
    *,
    max_record_bytes: int,
    dead_lettering: DeadLettering,
    limits: EventLimits | None = None,
) -> Processed:
    decoded = decode_records(records, max_record_bytes=max_record_bytes, dead_lettering=dead_lettering,
                             limits=limits)
    return classify_decoded(engine, decoded, now, dead_lettering=dead_lettering)
