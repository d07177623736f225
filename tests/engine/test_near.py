"""`near`: the indexed partner search gives exactly the pairwise search's answer and evidence, and
distance counts units (a hanzi, a Latin word or number; whitespace nothing)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.conditions import EvalContext, Near, ScanResult, _PartnerIndex
from service.engine.normalize import NormalizedText
from service.events import ChatEvent, Evidence

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TEXT = "字" * 400  # every character a unit of its own: distance in characters

_span = st.tuples(st.integers(0, 390), st.integers(1, 9)).map(lambda s: (s[0], s[0] + s[1]))
# Few spans take the pairwise path; 70+ on each side (over 4,096 pairs) take the indexed one.
spans = st.lists(_span, max_size=20) | st.lists(_span, min_size=70, max_size=120)


def _evidence(span: tuple[int, int]) -> Evidence:
    return Evidence("text", span[0], span[1], TEXT[span[0] : span[1]])


def _pairwise(a: list[tuple[int, int]], b: list[tuple[int, int]], within: int) -> list[Evidence]:
    # The definition: the first b (in hit order) with an a (in hit order) at most `within` away.
    for b_span in b:
        for a_span in a:
            if max(a_span[0], b_span[0]) - min(a_span[1], b_span[1]) <= within:
                return [_evidence(a_span), _evidence(b_span)]
    return []


@settings(max_examples=300, deadline=None)
@given(a=spans, b=spans, within=st.integers(0, 30))
def test_near_matches_the_pairwise_definition(a: list[tuple[int, int]], b: list[tuple[int, int]], within: int) -> None:
    # Pattern id 1 holds the a spans, id 2 the b spans; many spans make the indexed path run.
    hits = {pid: spans for pid, spans in ((1, a), (2, b)) if spans}
    scan = ScanResult("text", TEXT, NormalizedText(TEXT), hits)
    ctx = EvalContext(ChatEvent(id="e", text=TEXT), NOW, [scan])
    evidence: list[Evidence] = []
    found = Near(0, (1,), (2,), within).holds(ctx, evidence)
    expected = _pairwise(a, b, within)
    assert found == bool(expected)
    assert evidence == expected


@settings(max_examples=500, deadline=None)
@given(a=st.lists(_span, min_size=1, max_size=30), b=_span, within=st.integers(0, 30))
def test_partner_index_answers_like_a_scan(a: list[tuple[int, int]], b: tuple[int, int], within: int) -> None:
    expected = any(max(s[0], b[0]) - min(s[1], b[1]) <= within for s in a)
    assert _PartnerIndex(a, within)(b) == expected


def _unit_starts(text: str) -> list[int]:
    # The definition, one character at a time: a unit starts at every character but whitespace,
    # except a Latin letter or digit that follows another.
    def word(char: str) -> bool:
        return char.isascii() and char.isalnum()

    return [i for i, c in enumerate(text) if not c.isspace() and not (i and word(c) and word(text[i - 1]))]


def _units_between(text: str, a: tuple[int, int], b: tuple[int, int]) -> int:
    low, high = min(a[1], b[1]), max(a[0], b[0])
    starts = _unit_starts(text)
    return sum(low <= s < high for s in starts) if high > low else high - low


_pieces = st.sampled_from(["字", "投", "，", " ", "  ", "vote", "for", "me", "200", "yuan", "x9", "!", "\t"])


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_pieces, min_size=2, max_size=60), data=st.data(), within=st.integers(0, 12))
def test_near_counts_a_word_as_one_unit_and_whitespace_as_none(
    pieces: list[str], data: st.DataObject, within: int
) -> None:
    text = "".join(pieces)
    span = st.tuples(st.integers(0, len(text) - 1), st.integers(1, 6)).map(
        lambda s: (s[0], min(len(text), s[0] + s[1]))
    )
    a = data.draw(st.lists(span, min_size=1, max_size=6))
    b = data.draw(st.lists(span, min_size=1, max_size=6))
    scan = ScanResult("text", text, NormalizedText(text), {1: a, 2: b})
    ctx = EvalContext(ChatEvent(id="e", text=text), NOW, [scan])
    evidence: list[Evidence] = []
    found = Near(0, (1,), (2,), within).holds(ctx, evidence)
    expected = next(
        ((a_span, b_span) for b_span in b for a_span in a if _units_between(text, a_span, b_span) <= within), None
    )
    assert found == (expected is not None)
    if expected is not None:
        assert [(e.start, e.end) for e in evidence] == list(expected)


def test_an_english_window_reads_words() -> None:
    text = "vote for me on friday, 200 yuan each"
    a, b = (0, 11), (text.index("yuan"), text.index("yuan") + 4)
    # Between them: on, friday, the comma, 200: four units (16 characters).
    for within, holds in ((3, False), (4, True)):
        scan = ScanResult("text", text, NormalizedText(text), {1: [a], 2: [b]})
        ctx = EvalContext(ChatEvent(id="e", text=text), NOW, [scan])
        assert Near(0, (1,), (2,), within).holds(ctx, []) is holds
