"""Substitution tables — what a character may be written as to dodge a keyword — split in two.

Each table is a set of pairs built from maintained sources:
- homophones: two GB2312 hanzi with the same toneless first pypinyin reading (沙, 傻: sha);
- near-homophones: two GB2312 hanzi whose readings differ only by a fuzzy-pinyin pair that
  speakers of many dialects merge (zh/z, ch/c, sh/s, n/l, h/f; -ang/-an, -eng/-en, -ing/-in):
  拉 la for 那 na, 分 fen for 昏 hun;
- emoji: an emoji and a hanzi it can stand for — a character of its Chinese CLDR name, any
  homophone of one (🐴 马 ma for 妈), or the number it shows (🎱 for 八).

Every table is split by a stable hash of the pair (CRC-32, low bit) into a *fold* half and a
*held-out* half. The matcher's fold tables are built from the fold halves only (tables.py:
`homophone_folds`, `near_homophone_folds`, `emoji_stand_ins`); the robustness suite
(loadtest/quality/perturb.py) substitutes only from the held-out halves. So its figures measure
how the folds generalise — by transitivity (沙 ~ 莎 ~ 傻), by reading (🐴 read as ma) — and not how
well a fold inverts its own table.
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass
from typing import Final

import emoji as emoji_package

from service.rules import tables

_NUMERALS: Final = "零一二三四五六七八九"
_SINGLE_DIGIT: Final = re.compile(r"(?<![0-9])([0-9])(?![0-9])")


@dataclass(frozen=True)
class Split:
    """One substitution table's two halves: (written, meant) pairs (symmetric tables hold each
    unordered pair once, smaller code point first)."""

    fold: frozenset[tuple[str, str]]
    held: frozenset[tuple[str, str]]


def held_out(first: str, second: str) -> bool:
    """The pair's half: True for the held-out half."""
    return zlib.crc32(f"{first}\0{second}".encode()) & 1 == 1


def _split(pairs: set[tuple[str, str]]) -> Split:
    held = frozenset(p for p in pairs if held_out(*p))
    return Split(frozenset(pairs) - held, held)


def _pairs_within(groups: list[str]) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for group in groups:
        ordered = sorted(group)
        for i, first in enumerate(ordered):
            pairs.update((first, second) for second in ordered[i + 1 :])
    return pairs


@functools.lru_cache(maxsize=1)
def homophones() -> Split:
    return _split(_pairs_within(list(tables.homophone_groups().values())))


def fuzzy_syllable(syllable: str) -> str:
    """The syllable with fuzzy-pinyin distinctions merged: zh ch sh → z c s, l → n, f → h,
    -ang -eng -ing → -an -en -in (zhang, zan → zan; lin, ning → nin)."""
    for retroflex in ("zh", "ch", "sh"):
        if syllable.startswith(retroflex):
            syllable = syllable[0] + syllable[2:]
            break
    else:
        if syllable[:1] == "l":
            syllable = "n" + syllable[1:]
        elif syllable[:1] == "f":
            syllable = "h" + syllable[1:]
    if syllable.endswith(("ang", "eng", "ing")):
        syllable = syllable[:-1]
    return syllable


@functools.lru_cache(maxsize=1)
def near_homophones() -> Split:
    """Pairs that sound alike only under fuzzy pinyin (same-reading pairs are `homophones`)."""
    by_fuzzy: dict[str, list[str]] = {}
    for syllable, group in tables.homophone_groups().items():
        by_fuzzy.setdefault(fuzzy_syllable(syllable), []).append(group)
    pairs: set[tuple[str, str]] = set()
    for groups in by_fuzzy.values():
        for i, first_group in enumerate(groups):
            for second_group in groups[i + 1 :]:
                pairs.update((min(a, b), max(a, b)) for a in first_group for b in second_group)
    return _split(pairs)


@functools.lru_cache(maxsize=1)
def emoji() -> Split:
    """(emoji, hanzi) pairs: each character of a single-code-point emoji's Chinese CLDR name and
    its homophones, and the hanzi numeral of a digit its English name shows (🎱 pool 8 ball)."""
    groups = tables.homophone_groups()
    group_of = {char: group for group in groups.values() for char in group}
    pairs: set[tuple[str, str]] = set()
    for name, chars in tables.emoji_names().items():
        if not tables.is_cjk(name[0]):
            continue
        for char in chars:
            if len(char) != 1:
                continue
            for meant in name:
                pairs.update((char, other) for other in group_of.get(meant, meant))
    for char, data in emoji_package.EMOJI_DATA.items():
        digits = _SINGLE_DIGIT.findall(str(data.get("en", "")))
        if len(char) == 1 and len(digits) == 1:
            numeral = _NUMERALS[int(digits[0])]
            pairs.update((char, other) for other in group_of.get(numeral, numeral))
    return _split(pairs)
