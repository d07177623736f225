"""Keyword → extra pattern variants for the keyword-side evasion layers: leet, pinyin, emoji
(and the reading-in-context half of homophones).

The text-side layers (width, case, invisible, separators, traditional, homophones) fold the
*message* 1:1, so offsets survive. These cannot: 🧧 stands for two characters, "hongbao" for two,
and folding p0rn → porn in the text would also rewrite prices and the numbers regexes look for.
So they widen the *keyword* instead, once at pack load:

    porn  (leet)    → \\bp[o0]rn\\b                      one pattern, classes per letter
    红包  (pinyin)  → \\bhongbao\\b, \\bhong bao\\b         one literal per spelling
    红包  (emoji)   → 🧧                                 one literal per stand-in
    发红包 (emoji)  → 发🧧

Variants are fixed-length literals (or leet classes of single characters), so the matcher takes a
hit's start as end − length and checks word boundaries itself: no RE2 call, and Hyperscan compiles
plain literals ~3x faster than alternations or optional gaps (measured: docs/benchmarks.md).
Every variant matches the normalised text, whose spans map back to the original, so evidence
offsets stay exact whatever layer found the match.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from service.engine.normalize import Normalizer
from service.rules import tables

# Pinyin spellings are built for terms of 2 up to this many characters (one syllable alone, like
# "chun" for 蠢, is a name or a word too often; longer terms are phrases nobody spells out), for
# at most this many reading combinations (heteronyms), each joined (hongbao) and spaced (hong bao).
MAX_PINYIN_CHARS: Final = 6
MAX_READING_COMBINATIONS: Final = 2
MAX_EMOJI_VARIANTS: Final = 8
# Stand-ins by reading (🐔 鸡 ji for 机) only in terms this short: they are how 2–3 character
# insults and markings get written (傻🖊, 代🐕); for longer terms they only grow the database.
MAX_READING_EMOJI_CHARS: Final = 3

_ASCII_WORD: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

Fold = Callable[[str], str]  # the channel's normalisation, applied to what the patterns contain


def folder(normalizer: Normalizer) -> Fold:
    def fold(text: str) -> str:
        return normalizer.normalize(text).text

    return fold


@dataclass(frozen=True, slots=True)
class Variant:
    expression: str
    length: int  # in characters of the normalised text


@dataclass(frozen=True, slots=True)
class Expansion:
    """What a keyword compiles to beyond itself. `fixed` replaces the plain literal when set."""

    fixed: Variant | None
    extra: tuple[Variant, ...]
    emoji: frozenset[str]  # stand-in emoji the normaliser must keep (never removed as separators)


NO_EXPANSION: Final = Expansion(None, (), frozenset())


def expand(
    plain: str, fold: Fold, *, leet: bool, pinyin: bool, homophones: bool, emoji: bool
) -> Expansion:
    """Variants of the keyword `plain` (normalised without homophone folding) for a channel whose
    normalisation is `fold`."""
    has_cjk = any(tables.is_cjk(ch) for ch in plain)
    cjk_only = has_cjk and all(tables.is_cjk(ch) for ch in plain)
    fixed = _leet(plain, fold) if leet and not has_cjk else None
    readings = tables.readings(plain) if cjk_only and (pinyin or homophones or emoji) else []
    extra: list[Variant] = []
    if homophones and readings:
        extra.extend(_reading_in_context(plain, readings, fold))
    if pinyin and readings and 2 <= len(plain) <= MAX_PINYIN_CHARS and all(readings):
        extra.extend(_pinyin(readings))
    used: set[str] = set()
    if emoji:
        for variant, stand_in in _emoji_variants(plain, readings, fold):
            extra.append(Variant(_literal(variant), len(variant)))
            used.add(stand_in)
    if fixed is None and not extra:
        return NO_EXPANSION
    return Expansion(fixed, tuple(dict.fromkeys(extra)), frozenset(used))


def _escape(char: str) -> str:
    return char if char.isalnum() or ord(char) > 0x7F else f"\\x{ord(char):02x}"


def _literal(text: str) -> str:
    """As the compiler's `literal_expression`: \\b where an end is an ASCII word character."""
    prefix = "\\b" if text[0] in _ASCII_WORD else ""
    suffix = "\\b" if text[-1] in _ASCII_WORD else ""
    return prefix + "".join(_escape(c) for c in text) + suffix


# --- leet


def _leet(term: str, fold: Fold) -> Variant | None:
    """`porn` → `\\bp[o0]rn\\b`: each letter or one of its shape stand-ins (digits, symbols)."""
    classes = []
    for char in term:
        stand_ins = tables.LEET.get(char.lower(), "") if char.isascii() and char.isalpha() else ""
        # Stand-ins pass through the channel's folding too, like the text they will meet.
        members = char + "".join(fold(s) or s for s in stand_ins)
        classes.append("".join(dict.fromkeys(members)))
    if all(len(c) == 1 for c in classes):
        return None
    if len(classes) == 1:
        return Variant(_edge(classes[0], before=True, after=True), 1)
    middle = "".join(_class(c) for c in classes[1:-1])
    expression = _edge(classes[0], before=True, after=False) + middle + _edge(classes[-1], before=False, after=True)
    return Variant(expression, len(classes))


def _class(members: str) -> str:
    if len(members) == 1:
        return _escape(members)
    return "[" + "".join(_escape(c) for c in members) + "]"


def _edge(members: str, *, before: bool, after: bool) -> str:
    """A class at an end: word characters get \\b there, symbols cannot (`$ex` has no \\b before $)."""
    word = "".join(c for c in members if c in _ASCII_WORD)
    other = "".join(c for c in members if c not in _ASCII_WORD)
    if not word:
        return _class(other)
    bounded = ("\\b" if before else "") + _class(word) + ("\\b" if after else "")
    if not other:
        return bounded
    return f"(?:{bounded}|{_class(other)})"


# --- homophones and pinyin


def _reading_in_context(plain: str, readings: Sequence[tuple[str, ...]], fold: Fold) -> list[Variant]:
    """The homophone table folds each character by its most common reading; a keyword read
    otherwise in context (银行: 行 hang, not xing) also gets its in-context reading's form."""
    chars = []
    for char, options in zip(plain, readings, strict=True):
        representative = tables.homophone_representative(options[0]) if options else None
        chars.append(representative or fold(char))
    variant = "".join(chars)
    return [] if variant == fold(plain) else [Variant(_literal(variant), len(variant))]


def _pinyin(readings: Sequence[tuple[str, ...]]) -> list[Variant]:
    """Toneless spellings: hongbao and hong bao (ü written v and u: lvse, luse)."""
    variants = []
    for combination in itertools.islice(itertools.product(*readings), MAX_READING_COMBINATIONS):
        for syllables in dict.fromkeys((combination, tuple(s.replace("v", "u") for s in combination))):
            for gap in ("", " "):
                spelled = gap.join(syllables)
                variants.append(Variant(_literal(spelled), len(spelled)))
    return variants


def fold_regex(pattern: str, fold: Fold) -> str:
    """`pattern` with each hanzi outside a class range replaced by its fold (1:1), for a channel
    whose text is homophone-folded: 价格\\d+ finds 价格 and its homophones, as keywords do.

    Inside a class a hanzi keeps itself and gains its fold ([价值] → [价值假址]); range ends stay
    as written ([一-龥] still covers every common hanzi, representatives included). Escapes
    (`\\x{…}`, `\\p{Han}`) are copied untouched.
    """
    out: list[str] = []
    i = 0
    in_class = False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            stop = i + 2
            if pattern[i + 1 : i + 2] in ("x", "p", "P") and pattern[i + 2 : i + 3] == "{":
                stop = pattern.find("}", i) + 1 or len(pattern)
            out.append(pattern[i:stop])
            i = stop
            continue
        if in_class:
            if char == "]" and pattern[i - 1 : i] != "[":
                in_class = False
            ranged = pattern[i + 1 : i + 2] == "-" or pattern[i - 1 : i] == "-"
            out.append(char if ranged or not tables.is_cjk(char) else "".join(dict.fromkeys(char + fold(char))))
        else:
            if char == "[":
                in_class = True
                if pattern[i + 1 : i + 2] == "^":
                    out.append("[^")
                    i += 2
                    continue
            out.append(fold(char) if tables.is_cjk(char) else char)
        i += 1
    return "".join(out)


# --- emoji


def _emoji_variants(plain: str, readings: Sequence[tuple[str, ...]], fold: Fold) -> list[tuple[str, str]]:
    """The term with one part replaced by an emoji whose CLDR name is that part or (for a strict
    part) reads like it: 🧧 for 红包, 发🧧 for 发红包, 🐔密 for 机密 (🐔 鸡 reads ji), 💰 for "money bag".
    Longer parts first, so whole-word stand-ins win the cap."""
    names = tables.emoji_names()
    by_reading = tables.emoji_readings() if readings and all(readings) and len(plain) <= MAX_READING_EMOJI_CHARS else {}
    variants: list[tuple[str, str]] = []
    spans = sorted(itertools.combinations(range(len(plain) + 1), 2), key=lambda s: (s[0] - s[1], s[0]))
    for start, stop in spans:
        part = plain[start:stop]
        candidates = list(names.get(part, ()))
        # By reading only for a strict part: 🎵 音符 reads like a whole two-character insult,
        # and a lone 🎵 is everyday chat; 🐔密 keeps half the keyword as context.
        if by_reading and stop - start < len(plain):
            candidates.extend(by_reading.get(tuple(r[0] for r in readings[start:stop]), ()))
        for candidate in dict.fromkeys(candidates):
            folded = fold(candidate)
            # Multi-code-point sequences (ZWJ, keycaps, flags) and emoji the width layer already
            # folds to a character (㊙ → 秘) need no variant.
            if len(folded) != 1 or folded.isascii() or tables.is_cjk(folded):
                continue
            variants.append((fold(plain[:start]) + folded + fold(plain[stop:]), folded))
            if len(variants) >= MAX_EMOJI_VARIANTS:
                return variants
    return variants
