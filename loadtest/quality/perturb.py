"""Evasion perturbations, built independently of the normaliser's tables.

Each kind rewrites one span of text (an evidence span of a match) and returns it unchanged when
the kind does not apply (no Latin letters for leetspeak, no hanzi for pinyin…). Sources:
- traditional: OpenCC's s2t direction (the normaliser folds with t2s);
- homophones, near_homophones, emoji (a character written as an emoji), multi_character: the
  *held-out halves* of the substitution tables (service/rules/substitutions.py), which the
  matcher's folds are never built from; substitutes limited to GB2312 level-1 characters, the
  ones people type. homophones, near_homophones and emoji replace one hanzi of the span;
  multi_character replaces every hanzi of a span of ≥ 2, each by a held-out homophone or emoji;
- emoji_names: a substring equal to an emoji's whole CLDR name (🧧 for 红包);
- full-width: code point + 0xFEE0; zero-width: a fixed list of code points;
- emoji: the `emoji` package's CLDR names (Chinese and English), and its emoji as separators;
- leetspeak: the usual a→4 e→3 i→1 o→0 s→5 t→7, except inside dotted host names (m.tb.cn): a
  leet host is another host, not the same link disguised — no reader would type it to get there;
- pinyin: pypinyin toneless readings, with and without spaces;
- split_characters: one hanzi written as its two parts (婊 女表), from the matcher's own table
  (service.rules.tables.character_splits): a decomposition is the character's structure, not a
  choice among substitutes, so there is no other half to hold apart.
The choice among candidates is seeded by the text, so a run is reproducible.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections.abc import Callable
from typing import Final

import emoji
import opencc
from pypinyin import Style, lazy_pinyin

from service.rules import substitutions, tables

Perturbation = Callable[[str, random.Random], str]

ZERO_WIDTH: Final = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
# Non-sentence punctuation: the pack's documented design never lets ，。,.!? join CJK characters.
PUNCTUATION: Final = ("*", "-", "_", "~", "/", "·", "^", "=")
SYMBOLS: Final = ("★", "|", "#", "+", "♥", "→", "◆", "&")
LEET: Final = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}


def is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


def _interleave(span: str, pick: Callable[[], str]) -> str:
    """Insert a separator between every two adjacent non-space characters."""
    out = [span[:1]]
    for previous, char in itertools.pairwise(span):
        if not previous.isspace() and not char.isspace():
            out.append(pick())
        out.append(char)
    return "".join(out)


@functools.cache
def _s2t() -> opencc.OpenCC:
    return opencc.OpenCC("s2t.json")


def traditional(span: str, rng: random.Random) -> str:
    return str(_s2t().convert(span))


def separators_space(span: str, rng: random.Random) -> str:
    return _interleave(span, lambda: " ")


def separators_punctuation(span: str, rng: random.Random) -> str:
    return _interleave(span, lambda: rng.choice(PUNCTUATION))


def separators_symbol(span: str, rng: random.Random) -> str:
    return _interleave(span, lambda: rng.choice(SYMBOLS))


def separators_emoji(span: str, rng: random.Random) -> str:
    pool = separator_emoji()
    return _interleave(span, lambda: rng.choice(pool))


def zero_width(span: str, rng: random.Random) -> str:
    return _interleave(span, lambda: rng.choice(ZERO_WIDTH))


def full_width(span: str, rng: random.Random) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in span)


_HOST: Final = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+", re.IGNORECASE)


def leetspeak(span: str, rng: random.Random) -> str:
    hosts = [m.span() for m in _HOST.finditer(span)]
    return "".join(
        c if any(start <= i < end for start, end in hosts) else LEET.get(c.lower(), c) for i, c in enumerate(span)
    )


def _pinyin(span: str, joiner: str, initials: bool = False) -> str:
    """Hanzi runs become toneless pinyin (or its initials); other characters stay."""
    out: list[str] = []
    run: list[str] = []
    for char in [*span, ""]:
        if char and is_cjk(char):
            run.append(char)
            continue
        if run:
            syllables = lazy_pinyin("".join(run), style=Style.NORMAL)
            out.append(joiner.join(s[0] for s in syllables) if initials else joiner.join(syllables))
            run = []
        out.append(char)
    return "".join(out)


def pinyin_initials(span: str, rng: random.Random) -> str:
    """A span of at least three hanzi spelled by its syllables' initials (内部资料 → nbzl)."""
    if sum(map(is_cjk, span)) < 3:
        return span
    return _pinyin(span, "", initials=True)


def pinyin_spaced(span: str, rng: random.Random) -> str:
    return _pinyin(span, " ")


def pinyin_joined(span: str, rng: random.Random) -> str:
    return _pinyin(span, "")


def _replace_one(span: str, index: dict[str, tuple[str, ...]], rng: random.Random) -> str:
    """One hanzi of the span (chosen by `rng` among those with a substitute) replaced."""
    replaceable = [i for i, char in enumerate(span) if index.get(char)]
    if not replaceable:
        return span
    position = rng.choice(replaceable)
    return span[:position] + rng.choice(index[span[position]]) + span[position + 1 :]


def homophones(span: str, rng: random.Random) -> str:
    return _replace_one(span, _held_index("homophones"), rng)


def near_homophones(span: str, rng: random.Random) -> str:
    return _replace_one(span, _held_index("near_homophones"), rng)


def emoji_for_character(span: str, rng: random.Random) -> str:
    return _replace_one(span, _held_index("emoji"), rng)


def split_characters(span: str, rng: random.Random) -> str:
    """One hanzi of the span written as its two parts (婊 女表). From the matcher's own table: a
    decomposition is the character's structure, not a choice among substitutes to hold apart."""
    return _replace_one(span, _split_index(), rng)


@functools.cache
def _split_index() -> dict[str, tuple[str, ...]]:
    return {char: (parts,) for char, parts in tables.character_splits().items()}


def multi_character(span: str, rng: random.Random) -> str:
    """Every hanzi of a span of at least two replaced, each by a held-out homophone or emoji."""
    if sum(map(is_cjk, span)) < 2:
        return span
    sounds, pictures = _held_index("homophones"), _held_index("emoji")
    out = []
    for char in span:
        candidates = [*sounds.get(char, ()), *pictures.get(char, ())]
        out.append(rng.choice(candidates) if candidates else char)
    return "".join(out)


@functools.cache
def _held_index(kind: str) -> dict[str, tuple[str, ...]]:
    """Meant character → what it may be written as, from a held-out half only."""
    index: dict[str, set[str]] = {}
    if kind == "emoji":
        for written, meant in substitutions.emoji().held:
            index.setdefault(meant, set()).add(written)
    else:
        split = substitutions.homophones() if kind == "homophones" else substitutions.near_homophones()
        for first, second in split.held:
            if _gb2312_level1(second):
                index.setdefault(first, set()).add(second)
            if _gb2312_level1(first):
                index.setdefault(second, set()).add(first)
    return {meant: tuple(sorted(written)) for meant, written in index.items()}


def emoji_stand_ins(span: str, rng: random.Random) -> str:
    names = _emoji_names()
    longest = max(map(len, names))
    out: list[str] = []
    i = 0
    lowered = span.lower()
    while i < len(span):
        for size in range(min(longest, len(span) - i), 0, -1):
            candidates = names.get(lowered[i : i + size])
            if candidates and (size > 1 or is_cjk(span[i])):
                out.append(rng.choice(candidates))
                i += size
                break
        else:
            out.append(span[i])
            i += 1
    return "".join(out)


def _gb2312_level1(char: str) -> bool:
    try:
        encoded = char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return 0xB0 <= encoded[0] <= 0xD7


@functools.cache
def _emoji_names() -> dict[str, tuple[str, ...]]:
    """CLDR short name (Chinese; English words of ≥3 letters) → single-code-point emoji."""
    emoji.config.load_language("zh")
    names: dict[str, list[str]] = {}
    for char, data in emoji.EMOJI_DATA.items():
        if len(char) != 1:
            continue
        for language in ("zh", "en"):
            name = str(data.get(language, "")).strip(":").replace("_", " ").lower()
            if name and (language == "zh" or len(name) >= 3):
                names.setdefault(name, []).append(char)
    return {name: tuple(chars) for name, chars in names.items()}


@functools.cache
def separator_emoji() -> tuple[str, ...]:
    return tuple(sorted(c for c, d in emoji.EMOJI_DATA.items() if len(c) == 1 and d.get("status") == 2))


KINDS: Final[dict[str, Perturbation]] = {
    "traditional": traditional,
    "separators_space": separators_space,
    "separators_punctuation": separators_punctuation,
    "separators_symbol": separators_symbol,
    "separators_emoji": separators_emoji,
    "zero_width": zero_width,
    "full_width": full_width,
    "leetspeak": leetspeak,
    "pinyin_spaced": pinyin_spaced,
    "pinyin_joined": pinyin_joined,
    "pinyin_initials": pinyin_initials,
    "homophones": homophones,
    "near_homophones": near_homophones,
    "emoji": emoji_for_character,
    "multi_character": multi_character,
    "split_characters": split_characters,
    "emoji_names": emoji_stand_ins,
}


def merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with overlapping or touching ones merged."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def rewrite(
    text: str, spans: list[tuple[int, int]], kind: Perturbation, rng: random.Random
) -> tuple[str, list[tuple[str, str]]]:
    """`text` with every span rewritten (overlapping spans merged first), and (before, after) per span."""
    out = text
    pieces: list[tuple[str, str]] = []
    for start, end in reversed(merge(spans)):
        rewritten = kind(out[start:end], rng)
        pieces.append((out[start:end], rewritten))
        out = out[:start] + rewritten + out[end:]
    return out, pieces[::-1]


def apply(text: str, spans: list[tuple[int, int]], kind: Perturbation, rng: random.Random) -> str:
    """`text` with every span rewritten (overlapping spans merged first)."""
    return rewrite(text, spans, kind, rng)[0]
