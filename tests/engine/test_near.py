"""`near`: the indexed partner search gives exactly the pairwise search's answer and evidence."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.conditions import EvalContext, Near, ScanResult, _PartnerIndex
from service.engine.normalize import NormalizedText
from service.events import ChatEvent, Evidence

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TEXT = "x" * 400

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
