"""Pure stream functions (no Kafka): decode → classify → encode, dead letters, client options."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import pytest
from kafka_helpers import rules_dir

from service.engine.classifier import Engine
from service.engine.counting import Sighting
from service.errors import ConfigError
from service.events import ChatEvent, RulesetRef, Verdict, decode_event, decode_verdict, encode_verdict
from service.rules.loader import load_pack
from service.sample_traffic import SampleTraffic
from service.settings import Settings, bundled_rules_dir
from service.stream.dead_letters import (
    DETAIL_HEADER,
    OFFSET_HEADER,
    OMITTED_HEADER,
    PARTITION_HEADER,
    REASON_HEADER,
    TOPIC_HEADER,
    header_value,
)
from service.stream.kafka_config import client_options, producer_options
from service.stream.pipeline import process_records
from service.stream.topics import topic_specs
from service.verdict_counts import count_verdicts

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
SIX_MONTHS_MS = 180 * 24 * 3600 * 1000


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


def process(engine: Engine, records: Iterable[Record], max_record_bytes: int = 10_000):
    return process_records(engine, records, NOW, max_record_bytes=max_record_bytes,
                           dead_letter_max_value_bytes=100_000)


def test_verdicts_keep_input_order_and_are_keyed_by_chat(engine: Engine) -> None:
    records = [Record(event("a", "chat-1"), 0), Record(event("b", None), 1), Record(event("c", "chat-2"), 2)]
    out = process(engine, records)
    assert [decode_verdict(r.value).event_id for r in out.verdict_records] == ["a", "b", "c"]
    # No chat: the event id keys the verdict so that it still has a stable partition.
    assert [r.key for r in out.verdict_records] == [b"chat-1", b"b", b"chat-2"]
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
    assert [decode_verdict(r.value).event_id for r in out.verdict_records] == ["ok-1", "ok-2"]
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
    out = process_records(engine, [Record(big)], NOW, max_record_bytes=1000, dead_letter_max_value_bytes=2000)
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

    @property
    def has_counters(self) -> bool:
        return self.inner.has_counters

    def classify(
        self, event: ChatEvent, now: datetime, counts: Mapping[str, int] | None = None,
        sightings: list[Sighting] | None = None,
    ) -> Verdict:
        if event.id == self.bad_id:
            raise ValueError("boom")
        return self.inner.classify(event, now, counts, sightings)


def test_an_engine_error_dead_letters_only_that_event(engine: Engine) -> None:
    records = [Record(event(i), n) for n, i in enumerate(("a", "b", "c"))]
    out = process_records(FailsOn(engine, "b"), records, NOW, max_record_bytes=10_000,
                          dead_letter_max_value_bytes=10_000)
    assert [decode_verdict(r.value).event_id for r in out.verdict_records] == ["a", "c"]
    [letter] = out.dead_letters
    assert letter.reason == "classify_error"
    assert header_value(letter.headers, DETAIL_HEADER) == b"ValueError: boom"


@pytest.fixture(scope="module")
def bundled_engine() -> Engine:
    return load_pack(bundled_rules_dir())  # it has counter rules: the sightings path runs too


@pytest.mark.parametrize("fails", [False, True], ids=["one-pass", "one-by-one"])
def test_records_and_tally_are_what_the_engine_decided(bundled_engine: Engine, fails: bool) -> None:
    """Byte for byte what encode_verdict makes of engine.classify (plain allows come from a
    template), and a tally equal to counting those verdicts, on the pass that classifies the whole
    batch and on the one-by-one pass after an engine error."""
    sample = [r for r in SampleTraffic(seed=11, chats=50).records(3000, NOW) if r.event_id is not None]
    records = [Record(r.value, n, r.key) for n, r in enumerate(sample)]
    engine = bundled_engine
    classifier = FailsOn(engine, sample[7].event_id or "") if fails else engine
    out = process_records(classifier, records, NOW, max_record_bytes=100_000, dead_letter_max_value_bytes=100_000)
    produced = {decode_verdict(r.value).event_id: r.value for r in out.verdict_records}
    expected: list[Verdict] = []
    for record in sample:
        event = decode_event(record.value)
        if event.id not in produced:
            continue
        verdict = engine.classify(event, NOW, sightings=[])
        assert produced[event.id] == encode_verdict(verdict)
        expected.append(verdict)
    assert len(expected) == len(produced)
    assert out.tally == count_verdicts(expected)
    assert {"allow", "block"} <= {v.action for v in expected}
    assert any(not v.matches for v in expected) and any(v.matches for v in expected)
    assert out.counter_requests, "the sample has events a counter rule counts"
    assert len(out.dead_letters) == (1 if fails else 0)


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


def test_verdict_topic_keeps_six_months_by_default() -> None:
    specs = {spec.name: spec for spec in topic_specs(Settings())}
    assert int(specs["chat.verdicts"].configs["retention.ms"]) >= SIX_MONTHS_MS


def test_sasl_scram_over_tls_options() -> None:
    options = client_options(Settings(
        kafka_bootstrap="b1:9093, b2:9093", kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="redline", kafka_sasl_password="pw",
    ))
    assert options["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "redline"
    assert options["ssl_context"] is not None


@pytest.mark.parametrize(
    "overrides",
    [
        {"kafka_security_protocol": "SASL_PLAINTEXT"},  # SASL without a user name
        # A protocol or mechanism that does not exist is refused earlier, by the settings
        # themselves (tests/test_settings.py).
    ],
)
def test_unusable_security_settings_are_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        client_options(Settings(kafka_bootstrap="b:9092", **overrides))  # type: ignore[arg-type]


def test_producer_never_enables_idempotence() -> None:
    options = producer_options(Settings(kafka_bootstrap="b:9092"))
    assert options["acks"] == "all"
    assert "enable_idempotence" not in options
