"""The text-side layers fold 1:1 or remove with an offset map; tables come from their sources."""

from __future__ import annotations

import random

import pytest

from service.engine import normalize
from service.engine.normalize import Normalizer
from service.rules import tables
from service.rules.expansions import expand, fold_regex, folder
from service.rules.normalizers import Layers, build_normalizer

ALL_TEXT = Layers(homophones=True).text_side()
DEFAULT_TEXT = Layers().text_side()
NONE = Layers(False, False, False, False, False, False, False, False, False)


def _normalizer(layers: Layers, keep: frozenset[str] = frozenset()) -> Normalizer:
    return build_normalizer(layers, keep)


FOLDS = [
    # (layers, original, normalised)
    (DEFAULT_TEXT, "ｆｕｌｌ－ｗｉｄｔｈ", "full-width"),  # width: NFKC per character
    (DEFAULT_TEXT, "HELLO", "hello"),  # case
    (DEFAULT_TEXT, "機密", "机密"),  # traditional → simplified (OpenCC)
    (DEFAULT_TEXT, "机\u200b密", "机密"),  # invisible: zero-width space removed
    (DEFAULT_TEXT, "p\u0336o\u0336", "po"),  # invisible: stacked combining marks removed
    (DEFAULT_TEXT, "红 包", "红包"),  # separators between hanzi
    (DEFAULT_TEXT, "红🌹包", "红包"),  # an emoji between hanzi is a separator unless kept
    (DEFAULT_TEXT, "f.u.c.k", "fuck"),  # separators between spelled-out letters
    (DEFAULT_TEXT, "red packet", "red packet"),  # real Latin words keep their space
    (DEFAULT_TEXT, "红，包括", "红,包括"),  # sentence punctuation never joins hanzi (，is width-folded)
    (DEFAULT_TEXT, "价格100元", "价格100元"),  # digits are never folded in the text
    (ALL_TEXT, "沙比", "沙比"),  # homophones never fold the text itself (the matcher folds a view)
    (NONE, "ＡＢ 機\u200b", "ＡＢ 機\u200b"),  # every layer off: the text is untouched
]


@pytest.mark.parametrize(("layers", "original", "normalized"), FOLDS, ids=[f[1] for f in FOLDS])
def test_layer_folds(layers: Layers, original: str, normalized: str) -> None:
    result = _normalizer(layers).normalize(original)
    assert result.text == normalized
    for start in range(len(result.text)):
        begin, end = result.original_span(start, start + 1)
        assert 0 <= begin < end <= len(original)


HOMOPHONE_FOLDS = [
    # (text, its homophone view): each hanzi to the first character of its reading group
    ("沙比", "莎逼"),
    ("傻逼", "莎逼"),
    ("薇商", "威墒"),
    ("机密", "击眯"),
    ("价格100元, ok", "嘉哥100鸳, ok"),  # only hanzi fold
]


@pytest.mark.parametrize(("text", "folded"), HOMOPHONE_FOLDS, ids=[f[0] for f in HOMOPHONE_FOLDS])
def test_homophone_view_folds_one_to_one(text: str, folded: str) -> None:
    assert tables.homophone_fold(text) == folded


def test_kept_emoji_survive_separator_removal_and_close_gaps_like_hanzi() -> None:
    kept = _normalizer(DEFAULT_TEXT, frozenset("🧧"))
    assert kept.normalize("发🧧给你").text == "发🧧给你"
    assert kept.normalize("发 🧧 给你").text == "发🧧给你"
    assert _normalizer(DEFAULT_TEXT).normalize("发🧧给你").text == "发给你"  # not kept: a separator
    normalized = kept.normalize("发 🧧 给你")
    assert normalized.original_span(1, 2) == (2, 3)


def test_leet_table_keeps_to_shapes_and_the_homophone_source_is_common_hanzi() -> None:
    assert all(stand_in.isascii() and not stand_in.isalpha() for v in tables.LEET.values() for stand_in in v)
    groups = tables.homophone_groups()
    assert "薇" in groups["wei"] and "微" in groups["wei"]
    assert {"傻", "沙"} <= set(groups["sha"])
    assert sum(len(g) for g in groups.values()) > 6500  # GB2312's 6,763 hanzi, nearly all with a reading


def test_readings_follow_context_and_emoji_names_come_from_cldr() -> None:
    assert tables.readings("行长") == [("hang",), ("zhang",)]
    assert tables.readings("红包") == [("hong",), ("bao",)]
    assert "🧧" in tables.emoji_names()["红包"]
    assert "💰" in tables.emoji_names()["money bag"]
    assert "🐔" in tables.emoji_readings()[("ji",)]


EXPANSIONS = [
    # (term, layers on, expressions expected among the variants)
    ("porn", {"leet"}, {r"\bp[o0]rn\b"}),
    ("sex", {"leet"}, {r"(?:\b[s5]|\x24)[e3]x\b"}),  # a symbol at an end gets no \b
    ("红包", {"pinyin"}, {"hongbao", r"hong\x20bao"}),  # ends checked as syllables by the matcher
    ("绿色", {"pinyin"}, {"lvse", "luse"}),  # ü typed v or u
    ("low逼", {"pinyin"}, {"lowbi", r"low\x20bi"}),  # a mixed keyword: its hanzi spelled
    ("low逼", {"leet"}, {r"(?:\b[l1]|\x7c)[o0]w逼"}),  # a mixed keyword: its Latin letters widened
    ("red packet", set(), {r"\bredpacket\b"}),  # a Latin phrase run together (r e d p a c k e t)
    ("red packet", set(), {r"\bred\x20packets\b"}),  # an English term's last word in the plural
    ("bribe", set(), {r"\bbribes\b"}),
    ("sex tape", set(), {r"\bsex\x20tapes\b"}),
    ("party", set(), {r"\bparties\b"}),
    ("box", set(), {r"\bboxes\b"}),
    ("红包", {"emoji"}, {"🧧"}),
    ("发红包", {"emoji"}, {"发🧧"}),
    ("money bag", {"emoji"}, {"💰"}),
    ("婊子", {"split_characters"}, {"女表子"}),  # a hanzi written as its two parts
    ("强奸", {"split_characters"}, {"弓虽奸", "强女干", "弓虽女干"}),  # each alone, then all
]


@pytest.mark.parametrize(("term", "layers", "expected"), EXPANSIONS, ids=[f"{e[0]}-{e[1]}" for e in EXPANSIONS])
def test_expansions(term: str, layers: set[str], expected: set[str]) -> None:
    found = expand(
        term,
        folder(_normalizer(DEFAULT_TEXT)),
        leet="leet" in layers,
        pinyin="pinyin" in layers,
        homophones="homophones" in layers,
        emoji="emoji" in layers,
        split_characters="split_characters" in layers,
    )
    expressions = {v.expression for v in found.extra} | ({found.fixed.expression} if found.fixed else set())
    assert expected <= expressions


def test_no_plural_for_a_word_ending_in_s_a_short_word_or_hanzi() -> None:
    fold = folder(_normalizer(DEFAULT_TEXT))
    for term in ("rules", "dm me", "红包", "p0rn"):
        found = expand(term, fold, leet=False, pinyin=False, homophones=False, emoji=False)
        assert not any(v.expression.endswith(("s", "s\\b")) for v in found.extra), term


def test_a_split_never_uses_a_one_stroke_part_and_writes_a_radical_as_written() -> None:
    splits = tables.character_splits()
    assert splits["婊"] == "女表" and splits["骚"] == "马蚤"
    assert "子" not in splits  # 了 + 一: nobody writes it so
    assert "操" not in splits  # 喿 is not a GB2312 character
    # The table lists 他 as 人也 and as 亻也: a writer types the radical (人也 is ordinary text).
    assert splits["他"] == "亻也" and splits["你"] == "亻尔" and splits["把"] == "扌巴"
    assert all(len(parts) == 2 and parts[0] != char != parts[1] for char, parts in splits.items())


def test_a_model_reads_a_split_pair_back_unless_it_is_a_common_word() -> None:
    pairs = tables.model_split_pairs()
    assert pairs["女表"] == "婊" and pairs["弓虽"] == "强" and pairs["亻尔"] == "你"
    assert "女子" not in pairs and "女子" in tables.common_words()  # written so, it means women
    splits = tables.character_splits()
    assert all(splits[char] == pair for pair, char in pairs.items())
    # Of characters written with the same parts, the one written most often.
    frequency = tables.character_frequency()
    for pair, char in pairs.items():
        assert all(frequency.get(other, 0) <= frequency.get(char, 0) for other, p in splits.items() if p == pair)


def test_leet_stays_off_for_hanzi_and_nothing_widens_without_layers() -> None:
    fold = folder(_normalizer(DEFAULT_TEXT))
    assert expand("QQ群", fold, leet=True, pinyin=True, homophones=True, emoji=True).fixed is None
    nothing = expand("红包", fold, leet=False, pinyin=False, homophones=False, emoji=False)
    assert nothing.fixed is None and nothing.extra == ()


REGEXES = [
    ("价格\\d+元", "嘉哥\\d+鸳"),  # bare hanzi fold
    ("[价值]{2}", "[价嘉值芝]{2}"),  # class members keep themselves and gain their fold
    ("[一-龥]+", "[一-龥]+"),  # range ends stay
    ("\\x{4e00}傻", "\\x{4e00}莎"),  # escapes are copied
    ("[^傻]逼", "[^傻莎]逼"),
    ("(?i)wei信", "(?i)wei薪"),
]


@pytest.mark.parametrize(("pattern", "folded"), REGEXES, ids=[r[0] for r in REGEXES])
def test_fold_regex(pattern: str, folded: str) -> None:
    assert fold_regex(pattern, tables.homophone_fold) == folded


def test_the_spelled_run_shortcut_removes_what_the_full_rule_removes() -> None:
    """Without D, and without S or without C and E, only the spelled-run branch of the removal
    rule can match: normalize runs that branch alone (faster on English text and URLs)."""
    rng = random.Random(7)
    chars = {"C": "中", "L": "a", "S": " ", "P": ",", "D": "\x00", "E": "★", "O": "ø"}
    for _ in range(20_000):
        skeleton = "".join(rng.choice("CLSPDEO") for _ in range(rng.randint(0, 16)))
        folded = "".join(chars[c] if rng.random() < 0.8 else "*" for c in skeleton)
        expected: list[tuple[int, int]] = []
        for match in normalize.REMOVABLE.finditer(skeleton):
            group = match.lastgroup
            assert group is not None
            if group == "l":
                offset = match.start(group)
                inner = normalize.INNER_SEPARATORS.finditer(match[group])
                gaps = [(offset + gap.start(), offset + gap.end()) for gap in inner]
                expected.extend(normalize.word_breaks_kept(folded, gaps))
            else:
                expected.append(match.span(group))
        assert normalize._removals(folded, skeleton) == expected, skeleton
