"""Pure stream functions (no Kafka): decode → decide → encode, dead letters, counter requests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import pytest

from service.counter_requests import decode_request
from service.decisions import RULESET_HEADER
from service.engine.classifier import Engine, Outcome
from service.events import ChatEvent, RulesetRef, Verdict, decode_event, decode_verdict, encode_verdict
from service.kafka.dead_letters import (
    DETAIL_HEADER,
    OFFSET_HEADER,
    OMITTED_HEADER,
    PARTITION_HEADER,
    REASON_HEADER,
    TOPIC_HEADER,
    dead_lettering,
    header_value,
)
from service.rules.loader import load_pack
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir
from service.stream.pipeline import Processed, process_records
from service.verdict_counts import count_verdicts
from tests.kafka_helpers import rules_dir

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Record:
    value: bytes | None
    offset: int = 0
    key: bytes | None = b"k"
    topic: str = "in"
    partition: int = 2
    timestamp: int = 1_700_000_000_000
    headers: tuple[tuple[str, bytes], ...] = field(default=(("trace", b"abc"),))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_pack(rules_dir())


def event(event_id: str, chat: str | None = "g1", text: str = "hello") -> bytes:
    body: dict[str, object] = {"id": event_id, "text": text}
    if chat is not None:
        body["chat"] = {"id": chat}
    return msgspec.json.encode(body)


def process(engine: object, records: Iterable[Record], max_record_bytes: int = 10_000,
            dead_letter_max_value_bytes: int = 100_000) -> Processed:
    return process_records(engine, records, NOW, max_record_bytes=max_record_bytes,  # type: ignore[arg-type]
                           dead_lettering=dead_lettering(dead_letter_max_value_bytes))


def event_ids(out: Processed) -> list[str]:
    return [decode_verdict(value).event_id for _, value, _ in out.verdicts]


def test_verdicts_keep_input_order_and_are_keyed_by_chat(engine: Engine) -> None:
    records = [Record(event("a", "chat-1"), 0), Record(event("b", None), 1), Record(event("c", "chat-2"), 2)]
    out = process(engine, records)
    assert event_ids(out) == ["a", "b", "c"]
    # No chat: the event id keys the verdict so that it still has a stable partition.
    assert [key for key, _, _ in out.verdicts] == [b"chat-1", b"b", b"chat-2"]
    # Every verdict names the pack that decided it.
    assert {tuple(headers) for _, _, headers in out.verdicts} == {((RULESET_HEADER, engine.ruleset.digest.encode()),)}
    assert out.sent_at == [1_700_000_000.0] * 3  # no sent_at: the record's timestamp
    assert not out.dead_letters


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json {", "invalid_json"),  # broken syntax
        (b"", "invalid_json"),  # empty value
        (None, "invalid_json"),  # tombstone
        (b'{"id": 5}', "invalid_event"),  # valid JSON, id of the wrong type
        (b'{"text": "no id"}', "invalid_event"),  # required field missing
        (b'{"id": "x", "payment": {"amount": "lots", "direction": "send"}}', "invalid_event"),  # nested type
        (b'{"id": "x", "text": "' + b"a" * 20_000 + b'"}', "too_large"),  # over max_record_bytes
    ],
)
def test_poison_records_become_dead_letters_unchanged(engine: Engine, value: bytes | None, reason: str) -> None:
    out = process(engine, [Record(event("ok-1"), 10), Record(value, 11), Record(event("ok-2"), 12)])
    assert event_ids(out) == ["ok-1", "ok-2"]
    [letter] = out.dead_letters
    assert (letter.key, letter.value, letter.reason) == (b"k", value, reason)
    assert letter.headers[0] == ("trace", b"abc")  # the record's own headers come first, unchanged
    assert header_value(letter.headers, REASON_HEADER) == reason.encode()
    assert header_value(letter.headers, TOPIC_HEADER) == b"in"
    assert header_value(letter.headers, PARTITION_HEADER) == b"2"
    assert header_value(letter.headers, OFFSET_HEADER) == b"11"
    assert header_value(letter.headers, DETAIL_HEADER)


def test_decoder_message_names_the_json_path(engine: Engine) -> None:
    out = process(engine, [Record(b'{"id": "x", "chat": {"id": 7}}')])
    assert b"$.chat.id" in (header_value(out.dead_letters[0].headers, DETAIL_HEADER) or b"")


def test_dead_letter_too_large_for_the_dlq_keeps_headers_and_drops_the_value(engine: Engine) -> None:
    big = b"x" * 5000
    out = process(engine, [Record(big)], max_record_bytes=1000, dead_letter_max_value_bytes=2000)
    [letter] = out.dead_letters
    assert letter.value == b""
    assert header_value(letter.headers, OMITTED_HEADER) == b"5000"


@dataclass
class FailsOn:
    """Wraps the real engine; raises for one event id (the engine's own errors are not reproducible)."""

    inner: Engine
    bad_id: str

    @property
    def ruleset(self) -> RulesetRef:
        return self.inner.ruleset

    def evaluate(self, event: ChatEvent, now: datetime, counts: Mapping[str, int] | None = None) -> Outcome:
        if event.id == self.bad_id:
            raise ValueError("boom")
        return self.inner.evaluate(event, now, counts)

    def evaluate_batch(
        self, events: Sequence[ChatEvent], now: datetime, counts: Sequence[Mapping[str, int] | None] | None = None
    ) -> list[Outcome]:
        if any(event.id == self.bad_id for event in events):
            raise ValueError("boom")
        return self.inner.evaluate_batch(events, now, counts)


def test_an_engine_error_dead_letters_only_that_event(engine: Engine) -> None:
    records = [Record(event(i), n) for n, i in enumerate(("a", "b", "c"))]
    out = process(FailsOn(engine, "b"), records)
    assert event_ids(out) == ["a", "c"]
    [letter] = out.dead_letters
    assert letter.reason == "classify_error"
    assert header_value(letter.headers, DETAIL_HEADER) == b"ValueError: boom"


@pytest.fixture(scope="module")
def bundled_engine() -> Engine:
    return load_pack(bundled_rules_dir())  # it has counter rules: the sightings path runs too


@pytest.mark.parametrize("fails", [False, True], ids=["all-decided", "one-failing"])
def test_records_and_tally_are_what_the_engine_decided(bundled_engine: Engine, fails: bool) -> None:
    """Byte for byte what encode_verdict makes of the engine's outcome (plain allows come from a
    template), a tally equal to counting those verdicts, and a counter request for exactly the
    events with sightings; with one event the engine fails on, the others all the same."""
    sample = [r for r in SampleTraffic(seed=11, chats=50).records(3000, NOW) if r.event_id is not None]
    records = [Record(r.value, n, r.key) for n, r in enumerate(sample)]
    engine = bundled_engine
    failing = sample[7].event_id or ""
    out = process(FailsOn(engine, failing) if fails else engine, records, max_record_bytes=100_000)
    produced = {decode_verdict(value).event_id: value for _, value, _ in out.verdicts}
    counted = [decode_request(value) for _, value, _ in out.counter_requests]
    expected: list[Verdict] = []
    expected_counted: list[str] = []
    for record in sample:
        event = decode_event(record.value)
        if fails and event.id == failing:
            continue
        outcome = engine.evaluate(event, NOW)
        if outcome.sightings:
            expected_counted.append(event.id)
            continue
        assert produced[event.id] == encode_verdict(outcome.verdict)
        expected.append(outcome.verdict)
    assert len(expected) == len(produced)
    assert out.tally == count_verdicts(expected)
    assert {"allow", "block"} <= {v.action for v in expected}
    assert any(not v.matches for v in expected) and any(v.matches for v in expected)
    assert [decode_event(request.event).id for request in counted] == expected_counted
    assert expected_counted, "the sample has events a counter rule counts"
    for (key, _, _), request in zip(out.counter_requests, counted, strict=True):
        assert key == request.hops[0].state_key.encode()  # routed to the first key's owner
    assert len(out.dead_letters) == (1 if fails else 0)


def test_the_stream_admits_events_as_every_door_does(engine: Engine) -> None:
    # The same per-event limits as HTTP and the CLI (service/admission.py): a text over the limit
    # is refused whole (never scanned in part) as `too_large`, a time no clock can read as
    # `invalid_event`; the others go on.
    from service.admission import EventLimits
    from service.stream.pipeline import decode_records

    records = [
        Record(event("ok", text="hello"), 0),
        Record(event("long", text="x" * 101), 1),
        Record(msgspec.json.encode({"id": "t", "sent_at": "9999-12-31T23:59:59-23:59"}), 2),
        Record(msgspec.json.encode({"id": "u", "txt": "typo", "chat": {"id": "c", "kindd": 1}}), 3),
    ]
    decoded = decode_records(records, max_record_bytes=10_000, dead_lettering=dead_lettering(100_000),
                             limits=EventLimits(max_text_chars=100, max_media_hashes=10))
    assert [e.id for e in decoded.events] == ["ok", "u"]  # unknown fields are accepted...
    assert decoded.unknown_fields == 1  # ...and counted
    reasons = [(header_value(d.headers, REASON_HEADER), header_value(d.headers, DETAIL_HEADER))
               for d in decoded.dead_letters]
    assert reasons == [
        (b"too_large", b"Expected `str` of length <= 100 - at `$.text`"),
        (b"invalid_event", b"timestamp out of range once converted to UTC - at `$.sent_at`"),
    ]


def test_a_heavy_batch_is_sliced_by_scanned_characters() -> None:
    from service.stream.pipeline import Decoded

    events = [ChatEvent(id=str(i), text="x" * 30) for i in range(10)]
    decoded = Decoded(events=events, records=[Record(b"{}", i) for i in range(10)], dead_letters=["d"])  # type: ignore[list-item]
    slices = decoded.slices(100)
    assert [[e.id for e in s.events] for s in slices] == [["0", "1", "2"], ["3", "4", "5"], ["6", "7", "8"], ["9"]]
    assert slices[0].dead_letters == ["d"] and all(not s.dead_letters for s in slices[1:])
    assert len(decoded.slices(10_000)) == 1
