"""Property tests: whatever layers ran, evidence offsets index the original text exactly.

A keyword is perturbed by random evasions from every layer (traditional characters, zero-width
and separator characters, full-width, case, leet, pinyin, homophones, emoji), put between random
Unicode, and the verdict must carry evidence whose span is exactly the perturbed keyword.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import opencc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service.engine.classifier import Engine
from service.events import ChatEvent
from service.rules.loader import load_pack
from service.rules.normalizers import Layers, build_normalizer

PACK = Path(__file__).resolve().parent.parent / "packs" / "evasion"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Hanzi that delimit the inserted keyword: not word characters, and they stop letter-by-letter
# joining, so the keyword cannot fuse with whatever random text surrounds it.
DELIMITER = "中"

_TO_TRADITIONAL = opencc.OpenCC("s2t.json")
Perturb = Callable[[str, st.DrawFn], str]


def _between(chars: list[str]) -> Perturb:
    def insert(piece: str, draw: st.DrawFn) -> str:
        return draw(st.sampled_from(chars)).join(piece)

    return insert


def _traditional(piece: str, draw: st.DrawFn) -> str:
    return str(_TO_TRADITIONAL.convert(piece))


def _full_width(piece: str, draw: st.DrawFn) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in piece)


def _upper(piece: str, draw: st.DrawFn) -> str:
    return piece.upper()


def _leet(piece: str, draw: st.DrawFn) -> str:
    return piece.replace("o", "0").replace("i", "1")


_ZERO_WIDTH = _between(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200b\u200d"])
_SEPARATOR = _between([" ", "*", "-", "_", "~", "·", "🌹", " * ", "\u3000"])


def _replace(spellings: list[str]) -> Perturb:
    def replace(piece: str, draw: st.DrawFn) -> str:
        return draw(st.sampled_from(spellings))

    return replace


# keyword → (rule that must match, first perturbation that replaces the keyword or None,
#            perturbations that may follow, in this order)
CASES: dict[str, tuple[str, list[Perturb], list[Perturb]]] = {
    "机密": ("secret.marking", [_replace(["机密", "jimi", "ji mi", "🐔密"])], [_traditional, _ZERO_WIDTH, _SEPARATOR]),
    "红包": ("payment.red_packet", [_replace(["红包", "hongbao", "hong bao", "HongBao", "🧧"])],
             [_traditional, _ZERO_WIDTH, _SEPARATOR, _full_width]),
    "傻逼": ("insult.zh", [_replace(["傻逼", "沙比", "傻🖊", "shabi", "沙币"])], [_ZERO_WIDTH, _SEPARATOR]),
    "微商": ("shop.side_business", [_replace(["微商", "薇商", "威商", "weishang"])],
             [_traditional, _ZERO_WIDTH, _SEPARATOR]),
    "porn": ("obscene.en", [_replace(["porn"])], [_leet, _upper, _full_width, _ZERO_WIDTH, _SEPARATOR]),
    "idiot": ("obscene.en", [_replace(["idiot"])], [_leet, _upper, _full_width, _ZERO_WIDTH]),
}

# Random surroundings: any code point (astral, combining, controls…) plus what the layers touch.
_NOISE = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list(" *.,，。!?\u200b\u200d\ufeff\u0336ＡＢａｂ😀🌹🎉abc123")),
    ),
    max_size=40,
)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_pack(PACK)


@st.composite
def _perturbed(draw: st.DrawFn) -> tuple[str, str]:
    keyword = draw(st.sampled_from(sorted(CASES)))
    rule, first, optional = CASES[keyword]
    piece = first[0](keyword, draw)
    latin_spelling = piece.isascii()
    for perturb in optional:
        if latin_spelling and perturb is _traditional:
            continue
        if draw(st.booleans()):
            piece = perturb(piece, draw)
    return rule, piece


def _rule_spans(engine: Engine, text: str, rule: str) -> set[tuple[int, int]]:
    verdict = engine.classify(ChatEvent(id="p", text=text), NOW)
    return {(e.start, e.end) for m in verdict.matches if m.rule == rule for e in m.evidence}


@PROPERTY
@given(case=_perturbed(), prefix=_NOISE, suffix=_NOISE)
def test_evidence_is_exactly_the_perturbed_keyword(
    engine: Engine, case: tuple[str, str], prefix: str, suffix: str
) -> None:
    rule, piece = case
    head, tail = prefix + DELIMITER, DELIMITER + suffix
    # The random text may hold its own occurrence (reported first): not what this test is about.
    assume(not _rule_spans(engine, head, rule) and not _rule_spans(engine, tail, rule))
    text = head + piece + tail
    verdict = engine.classify(ChatEvent(id="p", text=text), NOW)
    assert verdict == engine.classify(ChatEvent(id="p", text=text), NOW)  # deterministic
    for match in verdict.matches:
        for evidence in match.evidence:
            assert 0 <= evidence.start <= evidence.end <= len(text)
            assert text[evidence.start : evidence.end] == evidence.text
    assert (len(head), len(head) + len(piece)) in _rule_spans(engine, text, rule), (text, piece)


_PROFILES = [
    build_normalizer(Layers().text_side()),
    build_normalizer(Layers(homophones=True).text_side(), frozenset("🧧🐔")),
    build_normalizer(Layers(separators=False).text_side()),
    build_normalizer(Layers(False, False, False, False, False, False, False, False, False)),
]
# Every code point, lone surrogates included (they reach us from lenient JSON decoders).
_ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=120)


@PROPERTY
@given(text=_ANY_TEXT | _NOISE, profile=st.sampled_from(range(len(_PROFILES))))
def test_normalize_never_raises_and_every_span_maps_into_the_original(text: str, profile: int) -> None:
    normalizer = _PROFILES[profile]
    normalized = normalizer.normalize(text)
    assert normalized == normalizer.normalize(text)  # deterministic
    assert len(normalized.text) <= len(text)
    size = len(normalized.text)
    for start in range(size + 1):
        for end in (start, min(start + 1, size), size):
            begin, stop = normalized.original_span(start, max(start, end))
            assert 0 <= begin <= stop <= len(text)
    for index in range(size):
        begin, stop = normalized.original_span(index, index + 1)
        # Each kept character is the 1:1 fold of the original character its offset points at.
        assert stop == begin + 1
        assert text[begin].translate(normalizer.table) == normalized.text[index]
