"""Property tests: hostile input never raises, offsets stay in range, results are deterministic."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine.classifier import Engine
from service.errors import EventDecodeError
from service.events import Chat, ChatEvent, File, Link, decode_event

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SLOW = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text biased towards what the mini pack folds: CJK, separators, zero-width, full-width, astral.
_ALPHABET = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(list("机密機傻逼红包投票不要说保密培训 *.,，。\u200b\u200d\ufeffＩｄｉｏｔIDIOT😀🧧")),
)
texts = st.text(alphabet=_ALPHABET, max_size=200)


@SLOW
@given(text=texts)
def test_classify_never_raises_and_evidence_slices_the_original(mini_engine: Engine, text: str) -> None:
    event = ChatEvent(id="f", text=text, chat=Chat(id="c"), file=File(name=text[:50]), link=Link(url=text[:80]))
    verdict = mini_engine.classify(event, NOW)
    assert verdict == mini_engine.classify(event, NOW)  # deterministic
    for match in verdict.matches:
        for evidence in match.evidence:
            source = {"text": event.text, "file.name": text[:50], "link.url": text[:80]}[evidence.field]
            assert 0 <= evidence.start <= evidence.end <= len(source)
            assert source[evidence.start : evidence.end] == evidence.text


@SLOW
@given(text=texts)
def test_normalize_maps_every_span_into_the_original(mini_engine: Engine, text: str) -> None:
    normalizer = mini_engine.channels[0].normalizer
    normalized = normalizer.normalize(text)
    assert len(normalized.text) <= len(text)
    for start in range(len(normalized.text)):
        original_start, original_end = normalized.original_span(start, start + 1)
        assert 0 <= original_start < original_end <= len(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=10), st.integers()),
        "type": st.sampled_from(["text", "image", "red_packet", "transfer", "file", "link", "video", "bogus"]),
        "text": st.one_of(st.text(max_size=50), st.integers()),
        "chat": st.one_of(st.fixed_dictionaries({"id": st.text(max_size=5)}), json_values),
        "sender": st.one_of(st.fixed_dictionaries({"roles": st.lists(st.text(max_size=8))}), json_values),
        "payment": st.one_of(
            st.fixed_dictionaries(
                {"amount": st.one_of(st.floats(), st.integers()), "direction": st.sampled_from(["send", "receive"])}
            ),
            json_values,
        ),
        "sent_at": st.one_of(st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()), st.text(max_size=30)),
        "forward": st.one_of(st.fixed_dictionaries({"shares": st.integers(), "views": st.integers()}), json_values),
        "extra": json_values,
    },
)


@SLOW
@given(raw=event_like)
def test_decoder_accepts_or_refuses_cleanly(mini_engine: Engine, raw: dict[str, object]) -> None:
    try:
        data = json.dumps(raw, allow_nan=True).encode()
    except ValueError:
        return
    try:
        event = decode_event(data)
    except EventDecodeError as exc:
        assert str(exc)
        return
    mini_engine.classify(event, NOW)  # whatever decodes, classifies


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_decoder_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(EventDecodeError):
        decode_event(data)
