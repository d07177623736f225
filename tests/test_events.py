"""The wire contract: what decodes, what is refused and with which message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import EventDecodeError
from service.events import (
    AdHocEvent,
    RulesetRef,
    Verdict,
    decode_adhoc_event,
    decode_event,
    decode_verdict,
    encode_verdict,
    event_json_schema,
    plain_allow_encoder,
)


def test_full_event_decodes_and_unknown_fields_are_ignored() -> None:
    event = decode_event(
        b'{"id":"e1","type":"red_packet","chat":{"id":"c1","kind":"group","members":30},'
        b'"sender":{"id":"u1","roles":["official"]},"sent_at":"2026-03-01T10:00:00+08:00",'
        b'"text":"\xe6\x81\xad\xe5\x96\x9c","payment":{"amount":88.8,"currency":"CNY","direction":"receive"},'
        b'"media":{"pdq":["' + b"a" * 64 + b'"]},"file":{"name":"a.pdf","size":10},'
        b'"link":{"url":"https://x.test"},"forward":{"origin_id":"o","shares":3,"views":9},"later":{"x":[1]}}'
    )
    assert event.payment is not None and event.payment.amount == 88.8
    assert event.chat is not None and event.chat.members == 30
    assert event.sent_at is not None and event.sent_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"text":"hi"}', "Object missing required field `id`"),
        (b'{"id":1}', "Expected `str`, got `int` - at `$.id`"),
        (b'{"id":"x","type":"hologram"}', "Invalid enum value 'hologram' - at `$.type`"),
        (b'{"id":"x","chat":{}}', "Object missing required field `id` - at `$.chat`"),
        (b'{"id":"x","payment":{"amount":-1,"direction":"send"}}', "Expected `float` >= 0"),
        (b'{"id":"x","payment":{"amount":1e999,"direction":"send"}}', "Number out of range"),
        (b'{"id":"x","payment":{"amount":NaN,"direction":"send"}}', "malformed"),
        (b'{"id":"x","payment":{"amount":1e13,"direction":"send"}}', "Expected `float` <= 1000000000000.0"),
        (b'{"id":"x","sent_at":"2026-01-01T00:00:00"}', "with a timezone component"),
        (b'{"id":"x","media":{"pdq":["zz"]}}', "Expected `str` matching regex"),
        (b'{"id":"x","forward":{"shares":-5}}', "Expected `int` >= 0"),
        (b"\xff\xfe", "malformed"),
        (b"[1]", "Expected `object`, got `array`"),
        (b'{"id":"x","z":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
)
def test_bad_events_are_refused_with_a_reason(raw: bytes, message: str) -> None:
    with pytest.raises(EventDecodeError, match=None) as info:
        decode_event(raw)
    assert message in str(info.value)


def test_adhoc_event_gets_an_id() -> None:
    assert decode_adhoc_event(b'{"text":"hi"}').with_id("gen").id == "gen"
    assert decode_adhoc_event(b'{"id":"mine"}').with_id("gen").id == "mine"
    assert isinstance(decode_adhoc_event(b"{}"), AdHocEvent)


def test_schema_requires_id() -> None:
    schema = event_json_schema()
    assert "$defs" in schema


@given(
    event_id=st.text(),
    name=st.text(min_size=1),
    decided_at=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])),
)
def test_plain_allow_template_encodes_as_the_struct_does(event_id: str, name: str, decided_at: datetime) -> None:
    ruleset = RulesetRef(name, "1", "d" * 64)
    encode_allow = plain_allow_encoder(ruleset, decided_at)
    expected = encode_verdict(Verdict(event_id, "allow", "none", (), ruleset, decided_at))
    assert encode_allow(event_id) == expected
    assert decode_verdict(encode_allow(event_id)).event_id == event_id
