"""The homophone view is scanned once for all patterns: each pattern is rewritten to match the
folded text wherever it matches the text (Homophones.view), and its hits there are read back on
the text (exact characters, or a twin's homophone that is not ordinary text)."""

from __future__ import annotations

import functools

import hyperscan
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.homophones import Homophones
from service.engine.matcher import FieldMatcher
from service.engine.patterns import PatternSpec
from service.rules import tables
from service.rules.expansions import homophone_twin


@functools.cache
def _homophones() -> Homophones:
    return Homophones(tables.homophone_table(), tables.common_words(), 4, tables.common_characters())


def _fold(text: str) -> str:
    return text.translate(_homophones().fold)


def _ends(expression: str, text: str) -> set[int]:
    """Every end (in characters) of a match of `expression` in `text`, as Hyperscan reports them."""
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=[expression.encode()], flags=[hyperscan.HS_FLAG_UTF8])
    data = text.encode()
    ends: set[int] = set()

    def on_match(_id: int, _from: int, to: int, _flags: int, _context: object) -> None:
        ends.add(len(data[:to].decode()))

    database.scan(data, match_event_handler=on_match)
    return ends


VIEWS = [
    # (expression, its view over the folded text, or None when it mentions no character with homophones)
    ("傻逼", "莎逼"),  # a literal: each hanzi folds
    ("porn", None),  # nothing to fold
    ("🧧", None),
    ("\\x{50bb}逼", "莎逼"),  # an escaped hanzi folds too
    ("[傻煞]逼", "[傻煞莎]逼"),  # a class gains its members' folds
    ("机密($|[^码度切])", "击眯($|[^码度])"),  # a negated class loses what an outsider folds to (且 → 切)
    ("[^一-龥]", None),  # a hanzi and its fold are both in the range: the class reads both alike
    ("[一-龥]{2}", None),
    ("[^一-十]", "[\\s\\S]"),  # outsiders fold into the range: any character
    ("[+-]傻", "[+-]莎"),  # a class without hanzi is copied as written
]


@pytest.mark.parametrize(("expression", "view"), VIEWS, ids=[v[0] for v in VIEWS])
def test_patterns_are_rewritten_over_the_view(expression: str, view: str | None) -> None:
    assert _homophones().view(expression) == view


EXPRESSIONS = [
    "傻逼",
    "机密($|[^码度集切钥封布闭实])",
    "秘密 ?[0-9一二三四五六七八九十]+ ?年",
    "[^一-十]+机",
    "价格[0-9]+元",
    "p[o0]rn",
    "(?:傻|沙)[b8]",
]
# Keyword characters, their homophones, other hanzi, digits, Latin, separators.
ALPHABET = list("傻逼沙比煞笔机密几米鸡码马切且秘蜜年二十价格嘉元园porn0b8 ★")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXPRESSIONS), st.lists(st.sampled_from(ALPHABET), max_size=14))
def test_a_view_matches_the_folded_text_wherever_its_pattern_matches_the_text(
    expression: str, chars: list[str]
) -> None:
    text = "".join(chars)
    view = _homophones().view(expression)
    if view is None:  # the view reads such a pattern exactly as the text does
        assert _ends(expression, _fold(text)) == _ends(expression, text)
    else:
        assert _ends(expression, text) <= _ends(view, _fold(text))


def test_one_scan_reports_exact_and_homophone_hits() -> None:
    twin = homophone_twin("傻逼", regex=False)
    assert twin is not None
    every_hit = FieldMatcher((PatternSpec("傻逼", 2, False, (twin,)),), homophones=_homophones())
    # The exact hit first; the homophone after it is found too (a pattern kept for `near`).
    assert every_hit.scan("傻逼你个沙比") == {0: [(0, 2), (4, 6)]}
    first_hit = FieldMatcher((PatternSpec("傻逼", 2, True, (twin,)),), homophones=_homophones())
    assert first_hit.scan("你个沙比，傻逼") == {0: [(5, 7)]}  # the pattern's own characters win
    assert first_hit.scan("大厦比较高") == {}  # ordinary text


PATTERNS_WITHOUT_TWINS = [
    # (expression, fixed length, text, hits): the view finds candidates, the text decides
    ("机密", 2, "有机密文件", {0: [(1, 3)]}),
    ("机密", 2, "几米远", {}),  # a homophone of a pattern without twins is no hit
    ("机密($|[^码度])", None, "机密文件", {0: [(0, 3)]}),
    ("机密($|[^码度])", None, "手机密码", {}),  # the negated class still holds on the text
    ("机密($|[^码度])", None, "手机密马", {0: [(1, 4)]}),  # 马 is not 码, though both fold alike
    ("porn", 4, "porn", {0: [(0, 4)]}),  # nothing to fold: read as it is
]


@pytest.mark.parametrize(
    ("expression", "length", "text", "hits"), PATTERNS_WITHOUT_TWINS, ids=[p[2] for p in PATTERNS_WITHOUT_TWINS]
)
def test_patterns_without_twins_report_only_their_own_characters(
    expression: str, length: int | None, text: str, hits: dict[int, list[tuple[int, int]]]
) -> None:
    twinned = PatternSpec("傻逼", 2, True, ("莎逼",))  # some twin, so the channel scans the view
    matcher = FieldMatcher((PatternSpec(expression, length, True), twinned), homophones=_homophones())
    assert matcher.scan(text) == hits


def test_a_regex_twin_finds_homophones_of_its_hanzi() -> None:
    twin = homophone_twin("价格[0-9]+元", regex=True)
    assert twin is not None
    matcher = FieldMatcher((PatternSpec("价格[0-9]+元", None, True, (twin,)),), homophones=_homophones())
    assert matcher.scan("价格100元") == {0: [(0, 6)]}
    assert matcher.scan("嘉格100元") == {0: [(0, 6)]}


KEYWORDS = ["傻逼", "煞笔", "机密", "大厦"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*ALPHABET, "大", "厦", "较"]), max_size=16))
def test_the_view_scan_agrees_with_reading_each_keyword_separately(chars: list[str]) -> None:
    """Reference: a keyword's hits are its occurrences in the text, plus the occurrences of its
    fold in the folded text that are not its own characters and not ordinary text."""
    text = "".join(chars)
    homophones = _homophones()
    patterns = tuple(PatternSpec(k, 2, False, (_fold(k),)) for k in KEYWORDS)
    found = FieldMatcher(patterns, homophones=homophones).scan(text)
    folded = _fold(text)
    for pattern_id, keyword in enumerate(KEYWORDS):
        exact = {(i, i + 2) for i in range(len(text) - 1) if text.startswith(keyword, i)}
        sounding = {
            (i, i + 2)
            for i in range(len(text) - 1)
            if folded.startswith(_fold(keyword), i)
            and (i, i + 2) not in exact
            and not homophones.ordinary(text, i, i + 2)
        }
        assert set(found.get(pattern_id, [])) == exact | sounding, keyword
