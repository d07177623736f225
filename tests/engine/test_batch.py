"""The batch path decides each event exactly as the per-event path does.

`Engine.evaluate_batch` / `classify_batch` normalise a batch's texts joined, scan each view once
for the batch and score the batch's texts in one call (service.engine.batch); for every event the
outcome must equal `evaluate(event)` (verdict, evidence offsets and their order, sightings).
Every call here passes `per_event_below=0`: by default a batch of a few events is decided one by
one (cheaper), and the tests would then compare the per-event path with itself.
Random batches mix event types, empty and long texts, cloaked text and the characters that meet
at the joins; a pack of regexes that could match across a join (`.`, negated classes, anchors)
and keywords split over two neighbouring events show that nothing matches across two events.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine.classifier import Engine
from service.engine.matcher import FieldMatcher
from service.engine.normalize_batch import normalize_batch
from service.engine.patterns import PatternSpec
from service.events import EVENT_TYPES, Chat, ChatEvent, File, Forward, Link, Media, Payment, Sender
from service.rules.loader import load_pack
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir

PACKS = Path(__file__).resolve().parent.parent / "packs"
NOW = datetime(2026, 3, 5, 9, 30, tzinfo=UTC)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# A pack whose patterns would match across a join if a batch let them: any character (`.`), a
# negated class (which a separator satisfies), anchors (a join is no text's start or end), `\B`,
# a proximity pair, and plain keywords.
CROSSING_PACK = {
    "pack.yaml": """
        name: crossing
        version: "1"
        categories: {x: {description: crossing}}
    """,
    "rules/main.yaml": r"""
        rules:
          - {id: x.dot, category: x, severity: low, action: review, when: {regex: "红.{0,3}包"},
             examples: {match: [红的包], no_match: [红]}}
          - {id: x.negated, category: x, severity: low, action: review, when: {regex: "机[^z]密"},
             examples: {match: [机a密], no_match: [机z密]}}
          - {id: x.tail, category: x, severity: low, action: review, when: {regex: "机[^z]"},
             examples: {match: [机a], no_match: [机z]}}
          - {id: x.start, category: x, severity: low, action: review, when: {regex: "^开头"},
             examples: {match: [开头了], no_match: [不开头]}}
          - {id: x.end, category: x, severity: low, action: review, when: {regex: "结尾$"},
             examples: {match: [这是结尾], no_match: [结尾了]}}
          - {id: x.inner, category: x, severity: low, action: review, when: {regex: 'ab\Bcd'},
             examples: {match: [abcd], no_match: [ab]}}
          - {id: x.near, category: x, severity: low, action: review,
             when: {near: {a: [投票], b: [红包], within: 4}},
             examples: {match: [投票发红包], no_match: [投票]}}
          - {id: x.keyword, category: x, severity: low, action: review, when: {keywords: [傻逼, secret]},
             examples: {match: [你傻逼, top secret], no_match: [傻]}}
    """,
}


def _write_pack(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Engine]:
    crossing = _write_pack(tmp_path_factory.mktemp("crossing"), CROSSING_PACK)
    return {
        "default": load_pack(bundled_rules_dir()),
        "mini": load_pack(PACKS / "mini"),
        "evasion": load_pack(PACKS / "evasion"),
        "counters": load_pack(PACKS / "counters"),
        "crossing": load_pack(crossing),
    }


def assert_batch_equals_single(engine: Engine, events: Sequence[ChatEvent]) -> None:
    outcomes = engine.evaluate_batch(events, NOW, per_event_below=0)
    verdicts = engine.classify_batch(events, NOW, per_event_below=0)
    assert len(outcomes) == len(verdicts) == len(events)
    for event, outcome, verdict in zip(events, outcomes, verdicts, strict=True):
        assert outcome == engine.evaluate(event, NOW), event
        assert verdict == engine.classify(event, NOW), event


# Text that cloaks and breaks: keywords and their pieces, separators a normaliser removes between
# hanzi, zero-width and full-width characters, emoji stand-ins, pinyin, traditional characters,
# newlines and the characters next to which a join sits (the separator itself is a newline), and
# what the model reads otherwise (a character written as its parts, pinyin, emoji).
_PIECES = [
    "机密", "機密", "机", "密", "傻逼", "傻", "逼", "沙比", "红包", "紅包", "红", "包", "投票", "发", "🧧", "🐴",
    "你妈", "shabi", "sha bi", "hongbao", "jimi", "IDIOT", "ｉｄｉｏｔ", "secret", "开头", "结尾", "ab", "cd",
    " ", "*", "，", ".", "-", "\u200b", "\ufeff", "\n", "\r\n", "\t", "\x00", "\x01", "★", "¥99", "a", "z",
    "保密培训", "不要说", "微商", "代购", "加我", "taobao.com", "绝密", "内部资料", "黑人", "素质低", "垃圾",
    "女表", "亻尔", "弓虽", "Reminder", "e心", "👍",  # split characters, English past the pinyin test, emoji
]
texts = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join) | st.text(max_size=40)
# A huge text: a few pieces repeated to 20k-80k characters (a 1 MiB text is test_long_texts'
# subject; this keeps 750 random batches within seconds). One event in ~12 gets one.
huge_texts = st.builds(
    lambda pieces, size: ("".join(pieces) * (size // max(len("".join(pieces)), 1) + 1))[:size],
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6), st.integers(20_000, 80_000),
)
event_texts = st.integers(0, 11).flatmap(lambda pick: huge_texts if pick == 0 else texts)


@st.composite
def events(draw: st.DrawFn) -> ChatEvent:
    kind = draw(st.sampled_from(EVENT_TYPES))
    optional = st.booleans()
    return ChatEvent(
        id=f"e{draw(st.integers(0, 10**6))}",
        type=kind,
        text=draw(event_texts),
        chat=Chat(id=draw(st.sampled_from(["c1", "c2"])), kind="group", members=draw(st.integers(2, 600))),
        sender=Sender(id="u1", roles=draw(st.sampled_from([(), ("official",), ("member",)]))),
        payment=Payment(amount=draw(st.integers(0, 300)), direction=draw(st.sampled_from(["send", "receive"])))
        if draw(optional) else None,
        file=File(name=draw(texts) + draw(st.sampled_from(["", ".docx", ".pdf"])), size=1) if draw(optional) else None,
        link=Link(url=draw(st.sampled_from(["https://shop9.taobao.com/x", "https://example.org/", ""])) + draw(texts))
        if draw(optional) else None,
        media=Media(pdq=("f" * 64,)) if draw(optional) else None,
        forward=Forward(origin_id="o", shares=draw(st.integers(0, 900)), views=0) if draw(optional) else None,
    )


@PROPERTY
@given(batch=st.lists(events(), max_size=10))
@pytest.mark.parametrize("pack", ["default", "mini", "evasion", "counters", "crossing"])
def test_random_batches_decide_as_events_alone(engines: dict[str, Engine], pack: str, batch: list[ChatEvent]) -> None:
    assert_batch_equals_single(engines[pack], batch)


def test_sample_traffic_decides_as_events_alone(engines: dict[str, Engine]) -> None:
    traffic = SampleTraffic(3, malformed_ratio=0.0)
    sample = [msgspec.convert(traffic.event(NOW), ChatEvent) for _ in range(3000)]
    engine = engines["default"]
    outcomes = engine.evaluate_batch(sample, NOW, per_event_below=0)
    assert [engine.evaluate(event, NOW) for event in sample] == outcomes
    assert sum(bool(o.verdict.matches) for o in outcomes) > 300  # the traffic exercises the pack
    assert any(o.sightings for o in outcomes)  # and its counters


@pytest.mark.parametrize("pack", ["default", "crossing"])
def test_long_texts_beside_short_ones(engines: dict[str, Engine], pack: str) -> None:
    rng = random.Random(5)
    long_text = "".join(rng.choice(_PIECES) for _ in range(20_000))  # ~60k characters
    batch = [
        ChatEvent(id="a", text="结尾"), ChatEvent(id="b", text=long_text), ChatEvent(id="c", text=""),
        ChatEvent(id="d", text="开头" + long_text[:5000] + "结尾"), ChatEvent(id="e", text="包"),
    ]
    assert_batch_equals_single(engines[pack], batch)


# Each pair is the end of one event's text and the start of the next's: together they would
# hold a pattern of the crossing pack; apart, neither does.
SPLITS = [
    ("红", "包"), ("红的", "包"), ("红", "的包"), ("机a", "密"), ("机", "a密"), ("开", "头"), ("这是结", "尾"),
    ("ab", "cd"), ("投票", "红包"), ("傻", "逼"), ("se", "cret"), ("sec", "ret"), ("傻 ", "逼"), ("傻\u200b", "逼"),
]


@pytest.mark.parametrize(("left", "right"), SPLITS)
def test_no_pattern_matches_across_two_events(engines: dict[str, Engine], left: str, right: str) -> None:
    engine = engines["crossing"]
    joined = engine.classify(ChatEvent(id="j", text=left + right), NOW)
    batch = [ChatEvent(id="l", text=left), ChatEvent(id="r", text=right)]
    verdicts = engine.classify_batch(batch, NOW, per_event_below=0)
    assert verdicts == [engine.classify(event, NOW) for event in batch]
    crossing = {m.rule for m in joined.matches} - {m.rule for v in verdicts for m in v.matches}
    assert crossing, "the pair holds a pattern joined, and neither event alone"


# The join itself could complete these: `[^z]` accepts the separator between two events (机[^z]密
# across it, 机[^z] ending on it).
THROUGH_THE_JOIN = [("机", "密"), ("机", "z"), ("a机", ""), ("机", "\n")]


@pytest.mark.parametrize(("left", "right"), THROUGH_THE_JOIN)
def test_the_join_is_no_character_of_either_event(engines: dict[str, Engine], left: str, right: str) -> None:
    engine = engines["crossing"]
    batch = [ChatEvent(id="l", text=left), ChatEvent(id="r", text=right), ChatEvent(id="n", text="z")]
    assert engine.classify_batch(batch, NOW, per_event_below=0) == [engine.classify(event, NOW) for event in batch]


# Events whose own normalisation would change if the join read as a separator: 结尾 + a space
# stays as it is alone (a separator is removed only between two words), so 结尾$ does not hold.
OWN_ENDS = [("结尾 ", "开"), ("开", " 开头"), ("结尾*", "开头"), ("f.u.c.", "k")]


@pytest.mark.parametrize(("left", "right"), OWN_ENDS)
def test_the_join_does_not_normalise_the_events_around_it(
    engines: dict[str, Engine], left: str, right: str
) -> None:
    engine = engines["crossing"]
    batch = [ChatEvent(id="l", text=left), ChatEvent(id="r", text=right)]
    assert engine.classify_batch(batch, NOW, per_event_below=0) == [engine.classify(event, NOW) for event in batch]


def test_a_fixed_length_hit_belongs_to_one_text(engines: dict[str, Engine]) -> None:
    """Fixed-length patterns are located from their end: one reported across the join, or ending
    on the separator, is dropped, not cut to the text it ends in."""
    normalizer = engines["crossing"].channels[0].normalizer
    patterns = (PatternSpec("机[^z]密", 3, True), PatternSpec("机[^z]", 2, False), PatternSpec("密", 1, False))
    matcher = FieldMatcher(patterns)
    texts = ["机", "密", "a机", "", "机a密"]
    found = matcher.scan_batch(normalize_batch(normalizer, texts))
    assert found == {i: hits for i, text in enumerate(texts) if (hits := matcher.scan(normalizer.normalize(text).text))}
    assert found == {1: {2: [(0, 1)]}, 4: {0: [(0, 3)], 1: [(0, 2)], 2: [(2, 3)]}}


@PROPERTY
@given(left=texts, right=texts)
def test_fuzz_no_match_spans_a_join(engines: dict[str, Engine], left: str, right: str) -> None:
    for pack in ("crossing", "default"):
        engine = engines[pack]
        batch = [ChatEvent(id="l", text=left), ChatEvent(id="r", text=right)]
        verdicts = engine.classify_batch(batch, NOW, per_event_below=0)
        for event, verdict in zip(batch, verdicts, strict=True):
            assert verdict == engine.classify(event, NOW)
            for match in verdict.matches:
                for evidence in match.evidence:
                    if evidence.field == "text":
                        assert event.text[evidence.start : evidence.end] == evidence.text


def test_counts_given_per_event(engines: dict[str, Engine]) -> None:
    engine = engines["counters"]
    traffic = SampleTraffic(9, malformed_ratio=0.0)
    sample = [msgspec.convert(traffic.event(NOW), ChatEvent) for _ in range(400)]
    first = engine.evaluate_batch(sample, NOW, per_event_below=0)
    counted = [{s.state_key: 99 for s in o.sightings} if o.sightings else None for o in first]
    again = engine.evaluate_batch(sample, NOW, counted, per_event_below=0)
    assert again == [engine.evaluate(e, NOW, c) for e, c in zip(sample, counted, strict=True)]
    assert any(o.sightings for o in first)


def test_empty_batch(engines: dict[str, Engine]) -> None:
    assert engines["default"].evaluate_batch([], NOW, per_event_below=0) == []
    assert engines["default"].classify_batch([], NOW, per_event_below=0) == []
