"""Issue 3's matcher fixes: separator gaps next to Latin and punctuation, kept characters seen both
ways (the alternate view), pinyin inside longer runs of letters, and the homophone view's refusal
of ordinary words."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.homophones import Homophones
from service.engine.matcher import FieldMatcher
from service.engine.patterns import PatternSpec
from service.rules import tables
from service.rules.expansions import homophone_twin, literal_separators
from service.rules.normalizers import Layers, build_normalizer

TEXT = Layers().text_side()

GAPS = [
    # (original, normalised)
    ("l o w 逼", "low逼"),  # a spelled-out Latin run and the hanzi after it join
    ("整个一l📩o🕠w🍷逼", "整个一low逼"),
    ("3-9-元", "39元"),  # digits spelled out before a hanzi unit
    ("今 晚 1 2 点", "今晚12点"),
    ("r*e*d p-a_c/k*e/t", "red packet"),  # spaces stay word breaks when the other gaps are symbols
    ("r e d p a c k e t", "redpacket"),  # all gaps spaces: nothing tells the words apart
    ("密/级_：^秘~密", "密级:秘密"),  # gaps beside sentence punctuation go, the punctuation stays
    ("m\ufeff.\u200ct\u200db.cn", "m.tb.cn"),  # zero-width alone does not spell a word out
    ("p\u200bo\u200br\u200bn", "porn"),
    ("治……长达", "治……长达"),  # the ellipsis ends a clause: never a separator
    ("他机，密码", "他机,密码"),  # nor the comma
    ("hello, world", "hello, world"),  # Latin text keeps its spacing
]


@pytest.mark.parametrize(("original", "normalized"), GAPS, ids=[g[0] for g in GAPS])
def test_separator_gaps(original: str, normalized: str) -> None:
    result = build_normalizer(TEXT).normalize(original)
    assert result.text == normalized
    for index, char in enumerate(result.text):
        start, end = result.original_span(index, index + 1)
        assert original[start:end].lower() == char or not char.isalnum()


KEPT = frozenset("🧧★¥")
VIEWS = [
    # (original, primary view, alternate view or None)
    ("发 🧧 给你", "发🧧给你", "发给你"),  # a stand-in stays, and is also read as a separator
    ("畜🧧牲", "畜🧧牲", "畜牲"),
    ("秘密★启用前", "秘密★启用前", "秘密启用前"),  # the regex's ★ survives in the primary view
    ("价¥99", "价¥99", "价99"),
    ("发🧧，好", "发🧧,好", None),  # next to punctuation: nothing to join
    ("🧧", "🧧", None),
    ("没有", "没有", None),
]


@pytest.mark.parametrize(("original", "primary", "alternate"), VIEWS, ids=[v[0] for v in VIEWS])
def test_kept_characters_are_read_both_ways(original: str, primary: str, alternate: str | None) -> None:
    normalizer = build_normalizer(TEXT, KEPT)
    normalized = normalizer.normalize(original)
    assert normalized.text == primary
    view = normalizer.without_kept(normalized.text)
    assert (view.text if view else None) == alternate


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["畜", "牲", "a", "1", " ", "🧧", "★", "，", "\u200b", "*"]), max_size=20))
def test_the_alternate_view_maps_back_to_the_same_characters(chars: list[str]) -> None:
    normalizer = build_normalizer(TEXT, KEPT)
    primary = normalizer.normalize("".join(chars)).text
    view = normalizer.without_kept(primary)
    if view is None:
        return
    for index, char in enumerate(view.text):
        start, end = view.original_span(index, index + 1)
        assert primary[start:end] == char


def test_pattern_separators_are_kept_and_regex_syntax_is_not() -> None:
    assert literal_separators("秘密 ?[★☆]|[★☆] ?秘密") == {"★", "☆"}
    assert literal_separators("[0-9]+ ?(元|块)|[¥$] ?[0-9]+") == {"¥", "$"}
    assert literal_separators("机密($|[^码度])") == frozenset()  # an anchor and a negated class
    assert literal_separators(r"(?:\b[s5]|\x24)[e3]x\b", regex=False) == {"$"}


def _pinyin_matcher(spelling: str) -> FieldMatcher:
    return FieldMatcher(
        (PatternSpec(spelling, len(spelling), True),), syllables=tables.pinyin_syllables(), spelled=frozenset({0})
    )


SPELLED = [
    # (text, spelling, found)
    ("hongbao", "hongbao", True),
    ("nigeshabi", "shabi", True),  # ni ge + shabi
    ("caonimade", "caonima", True),  # caonima + de
    ("zhuanzhang500", "zhuanzhang", True),  # digits end a run of letters
    ("shabiz", "shabi", False),  # z reads as no syllable
    ("animal", "nima", False),  # a + nima + l: l is no syllable
    ("zhichishiri", "chishi", False),  # mid-run: every pair of syllables is somewhere in a long run
]


@pytest.mark.parametrize(("text", "spelling", "found"), SPELLED, ids=[s[0] for s in SPELLED])
def test_pinyin_spellings_end_on_syllables(text: str, spelling: str, found: bool) -> None:
    assert bool(_pinyin_matcher(spelling).scan(text)) is found


def _homophones() -> Homophones:
    return Homophones(tables.homophone_table(), tables.common_words(), 4, tables.common_characters())


ORDINARY = [
    # (text, span of a homophone hit, ordinary)
    ("你个沙比", (2, 4), False),  # an evasion of 傻逼
    ("大厦比较高", (1, 3), True),  # 厦比 only across 大厦 and 比较
    ("评论里全是", (3, 5), True),  # 全是 for 拳师: the most frequent characters
    ("我觉得女权是", (3, 6), True),  # 女权 + 是 for 女拳师: a common word and a frequent character
    ("我女友", (1, 3), True),  # 女友 for 女优: a common word
]


@pytest.mark.parametrize(("text", "span", "ordinary"), ORDINARY, ids=[o[0] for o in ORDINARY])
def test_homophone_hits_that_read_as_ordinary_text_are_refused(
    text: str, span: tuple[int, int], ordinary: bool
) -> None:
    assert _homophones().ordinary(text, *span) is ordinary


def test_homophone_twins_report_under_the_keyword_and_skip_ordinary_occurrences() -> None:
    twin = homophone_twin("傻逼", regex=False)
    assert twin == "莎逼"
    matcher = FieldMatcher((PatternSpec("傻逼", 2, True, (twin,)),), homophones=_homophones())
    assert matcher.scan("你个沙比") == {0: [(2, 4)]}
    assert matcher.scan("大厦比较高，你个煞笔") == {0: [(8, 10)]}  # the first occurrence is refused
    assert matcher.scan("大厦比较高") == {}


def test_regexes_that_sound_like_common_words_get_no_twin() -> None:
    assert homophone_twin("机密($|[^码度])", regex=True) is None  # 羁縻, 吉米, 几米: 黄焖鸡米饭
    assert homophone_twin("秘密 ?[★☆]", regex=True) is not None
    assert homophone_twin("porn", regex=False) is None  # nothing to fold
