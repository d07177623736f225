"""Keyword → extra pattern variants for the keyword-side evasion layers: leet, pinyin, emoji,
and the homophone twins the matcher scans over its homophone view.

The text-side layers (width, case, invisible, separators, traditional) fold the *message* 1:1, so
offsets survive. These cannot: 🧧 stands for two characters, "hongbao" for two, and folding
p0rn → porn in the text would also rewrite prices and the numbers regexes look for. So they
widen the *keyword* instead, once at pack load:

    porn   (leet)    → \\bp[o0]rn\\b                     one pattern, classes per letter
    low逼  (leet)    → \\bl[o0]w逼                         the Latin part of a mixed keyword
    红包   (pinyin)  → hongbao, hong bao                    one literal per spelling
    low逼  (pinyin)  → lowbi, low bi
    红包   (emoji)   → 🧧                                 one literal per stand-in
    发红包 (emoji)   → 发🧧
    婊子   (split)   → 女表子                              a hanzi written as its two parts
    red packet       → \\bredpacket\\b                    a Latin phrase run together
    idiot            → \\bidiots\\b                       an English term's last word in the plural
    银行   (homophones) → twins 垠杭 (first readings) and 垠航 (in context: 行 hang), scanned over
                       the matcher's homophone view only

Variants are fixed-length literals (or leet classes of single characters), so the matcher takes a
hit's start as end − length and checks word boundaries itself: no RE2 call, and Hyperscan compiles
plain literals ~3x faster than alternations or optional gaps (measured: docs/benchmarks.md).
Pinyin spellings carry no `\\b`: the matcher checks that the letters around a hit read as pinyin
syllables (nigeshabi holds shabi, shabiz does not).
Every variant matches the normalised text, whose spans map back to the original, so evidence
offsets stay exact whatever layer found the match.
"""

from __future__ import annotations

import importlib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from service.engine.normalize import Normalizer
from service.rules import tables

# Pinyin spellings are built for terms of 2 up to this many characters (one syllable alone, like
# "chun" for 蠢, is a name or a word too often; longer terms are phrases nobody spells out), for
# at most this many reading combinations (heteronyms), each joined (hongbao) and spaced (hong bao).
MAX_PINYIN_CHARS: Final = 6
# Initials (nmsl for 你妈死了, cnm for 操你妈) for keywords of 3 to 8 hanzi: two letters are
# everywhere in Latin text (sb, dm, pk), three or more rarely are.
MIN_INITIALS_CHARS: Final = 3
MAX_INITIALS_CHARS: Final = 8
# Split characters (婊子 → 女表子, 强奸 → 弓虽奸 / 强女干 / 弓虽女干) for keywords of 2 to this many
# hanzi: each hanzi that splits, alone, and all of them at once, at most MAX_SPLIT_VARIANTS.
MAX_SPLIT_CHARS: Final = 6
MAX_SPLIT_VARIANTS: Final = 8
MAX_READING_COMBINATIONS: Final = 2
MAX_EMOJI_VARIANTS: Final = 8
# Stand-ins by reading (🐔 鸡 ji for 机) only in terms this short: they are how 2–3 character
# insults and markings get written (傻🖊, 代🐕); for longer terms they only grow the database.
MAX_READING_EMOJI_CHARS: Final = 3
# Homophone twins for keywords of at least this many hanzi: one character has ~20 homophones
# among common characters, and nearly every one is a word of its own.
MIN_HOMOPHONE_CHARS: Final = 2

_ASCII_WORD: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# Python's own regex parser (what `re` compiles with) reads the literals of a pattern; RE2's syntax
# is the same for literals, escapes and classes.
_REGEX_PARSER: Final = importlib.import_module("re._parser")

Fold = Callable[[str], str]  # the channel's normalisation, applied to what the patterns contain


def folder(normalizer: Normalizer) -> Fold:
    def fold(text: str) -> str:
        return normalizer.normalize(text).text

    return fold


@dataclass(frozen=True, slots=True)
class Variant:
    expression: str
    length: int  # in characters of the normalised text
    spelled: bool = False  # pinyin: its ends are checked as syllables, not as \b
    folded: bool = False  # as ambiguous as a fold (initials): its hits take at most `folded_action`


@dataclass(frozen=True, slots=True)
class Expansion:
    """What a keyword compiles to beyond itself. `fixed` replaces the plain literal when set."""

    fixed: Variant | None
    extra: tuple[Variant, ...]
    emoji: frozenset[str]  # stand-in emoji the normaliser must keep (never removed as separators)
    homophones: tuple[str, ...] = ()  # twins of the keyword's own pattern beyond its plain fold


NO_EXPANSION: Final = Expansion(None, (), frozenset())


def expand(
    plain: str, fold: Fold, *, leet: bool, pinyin: bool, homophones: bool, emoji: bool, near: bool = False,
    initials: bool = False, split_characters: bool = False,
) -> Expansion:
    """Variants of the keyword `plain` (normalised) for a channel whose normalisation is `fold`."""
    has_cjk = any(tables.is_cjk(ch) for ch in plain)
    cjk_only = has_cjk and all(tables.is_cjk(ch) for ch in plain)
    has_latin = any(ch.isascii() and ch.isalpha() for ch in plain)
    fixed = _leet(plain, fold) if leet and has_latin else None
    readings = tables.readings(plain) if has_cjk and (pinyin or initials or homophones or emoji) else []
    extra: list[Variant] = []
    twins: list[str] = []
    if homophones and cjk_only and len(plain) >= MIN_HOMOPHONE_CHARS:
        twins.extend(_reading_in_context(plain, readings, near))
    if pinyin and readings:
        if cjk_only and 2 <= len(plain) <= MAX_PINYIN_CHARS and all(readings):
            extra.extend(_pinyin(readings))
        elif not cjk_only:
            extra.extend(_pinyin_mixed(plain, readings))
    if initials and cjk_only and MIN_INITIALS_CHARS <= len(plain) <= MAX_INITIALS_CHARS and all(readings):
        extra.extend(_initials(readings))
    if split_characters and cjk_only and 2 <= len(plain) <= MAX_SPLIT_CHARS:
        extra.extend(Variant(_literal(split), len(split)) for split in _split(plain))
    if not has_cjk and " " in plain and all(ch.isascii() and (ch.isalnum() or ch == " ") for ch in plain):
        joined = plain.replace(" ", "")
        extra.append(Variant(_literal(joined), len(joined)))
    plural = _plural(plain) if not has_cjk else None
    if plural is not None:
        extra.append(Variant(_literal(plural), len(plural)))
    used: set[str] = set()
    if emoji:
        for variant, stand_in in _emoji_variants(plain, readings if cjk_only else [], fold):
            extra.append(Variant(_literal(variant), len(variant)))
            used.add(stand_in)
    if fixed is None and not extra and not twins:
        return NO_EXPANSION
    return Expansion(fixed, tuple(dict.fromkeys(extra)), frozenset(used), tuple(dict.fromkeys(twins)))


def _split(plain: str) -> list[str]:
    """`plain` with each hanzi that splits written as its two parts, one at a time, then all."""
    splits = tables.character_splits()
    places = [index for index, char in enumerate(plain) if char in splits]
    found = [plain[:index] + splits[plain[index]] + plain[index + 1 :] for index in places]
    if len(places) > 1:
        found.append("".join(splits.get(char, char) for char in plain))
    return found[:MAX_SPLIT_VARIANTS]


# An English term's last word in the plural (idiot → idiots, classified document → classified
# documents, bribe → bribes): a word of at least three letters not already ending in s.
_LAST_WORD: Final = re.compile(r"(?<![A-Za-z])[A-Za-z]{3,}$")


def _plural(term: str) -> str | None:
    """`term` with its last English word in the regular plural, or None when it has none."""
    last = _LAST_WORD.search(term)
    if last is None or term[-1] in "sS":
        return None
    word = last.group()
    if word.endswith(("x", "z", "ch", "sh")):
        return term + "es"
    if word[-1] == "y" and word[-2] not in "aeiou":
        return term[:-1] + "ies"
    return term + "s"


_HANZI_RUN: Final = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]{2,}")
_CLASS: Final = re.compile(r"\[(?:\\.|[^\]])*\]")


def homophone_twin(expression: str, *, regex: bool, near: bool = False) -> str | None:
    """`expression` over the homophone view (its hanzi folded, as fold_regex folds a regex); None
    when it has no hanzi (the view leaves it unchanged), or for a regex when a run of its hanzi
    sounds like common words (tables.HOMOPHONE_COLLISION_LIMIT)."""
    if not any(tables.is_cjk(ch) for ch in expression):
        return None
    if regex:
        runs = _HANZI_RUN.findall(_CLASS.sub(" ", expression))
        if any(tables.homophone_collisions(run, near) >= tables.HOMOPHONE_COLLISION_LIMIT for run in runs):
            return None
    return fold_regex(expression, tables.near_homophone_fold if near else tables.homophone_fold)


_LITERAL_CHARS: Final = re.compile(r"\\x([0-9a-f]{2})|([^\x00-\x7f])")


def literal_separators(expression: str, *, regex: bool = True) -> frozenset[str]:
    """Characters `expression` matches literally that the separators layer could remove (★ in
    秘密 ?[★☆], $ in [¥$]): the normaliser must keep them. Regex syntax is not a literal. A
    keyword's expression (`regex` False) holds its characters as themselves or as \\xNN."""
    literals: set[str] = set()
    if not regex:
        literals = {chr(int(code, 16)) if code else char for code, char in _LITERAL_CHARS.findall(expression)}
    else:
        try:
            _collect_literals(_REGEX_PARSER.parse(expression), literals)
        except (re.error, ValueError, OverflowError, RecursionError):
            literals = {ch for ch in expression if ord(ch) > 0x7F}  # RE2-only syntax: non-ASCII is literal
    return frozenset(ch for ch in literals if tables.is_removable(ch))


def _collect_literals(node: object, into: set[str]) -> None:
    for op, argument in node:  # type: ignore[attr-defined]
        name = str(op)
        if name == "LITERAL":
            into.add(chr(argument))
        elif name == "IN":
            if not any(str(item_op) == "NEGATE" for item_op, _ in argument):
                into.update(chr(code) for item_op, code in argument if str(item_op) == "LITERAL")
        elif name in ("SUBPATTERN", "MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            _collect_literals(argument[-1], into)
        elif name == "BRANCH":
            for branch in argument[1]:
                _collect_literals(branch, into)


def _escape(char: str) -> str:
    return char if char.isalnum() or ord(char) > 0x7F else f"\\x{ord(char):02x}"


def _plain(text: str) -> str:
    """A literal without \\b (a pinyin spelling: the matcher checks its ends as syllables)."""
    return "".join(_escape(c) for c in text)


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


def _reading_in_context(plain: str, readings: Sequence[tuple[str, ...]], near: bool = False) -> list[str]:
    """The homophone view folds each character by its most common reading; a keyword read
    otherwise in context (银行: 行 hang, not xing) also gets a twin with its in-context reading."""
    chars = []
    for char, options in zip(plain, readings, strict=True):
        representative = tables.homophone_representative(options[0], near) if options else None
        chars.append(representative or tables.homophone_fold(char, near))
    variant = "".join(chars)
    return [] if variant == tables.homophone_fold(plain, near) else [_literal(variant)]


def _pinyin(readings: Sequence[Sequence[str]]) -> list[Variant]:
    """Toneless spellings: hongbao and hong bao (ü written v and u: lvse, luse)."""
    variants = []
    for combination in itertools.islice(itertools.product(*readings), MAX_READING_COMBINATIONS):
        for syllables in dict.fromkeys((combination, tuple(s.replace("v", "u") for s in combination))):
            for gap in ("", " "):
                spelled = gap.join(syllables)
                variants.append(Variant(_plain(spelled), len(spelled), spelled=True))
    return variants


def _initials(readings: Sequence[Sequence[str]]) -> list[Variant]:
    """The initials of the toneless syllables, as a whole Latin word: 你妈死了 → nmsl, 操你妈 →
    cnm (zh, ch, sh are written z, c, s, as people type them). A hit is a folded reading (at most
    the rule's `folded_action`): three letters are also acronyms (操你娘 → cnn, CNN)."""
    variants = []
    for combination in itertools.islice(itertools.product(*readings), MAX_READING_COMBINATIONS):
        letters = "".join(syllable[0] for syllable in combination)
        variants.append(Variant(_literal(letters), len(letters), folded=True))
    return list(dict.fromkeys(variants))


def _pinyin_mixed(plain: str, readings: Sequence[tuple[str, ...]]) -> list[Variant]:
    """A keyword mixing Latin and hanzi (low逼, 傻b) spelled with its hanzi in pinyin: lowbi,
    low bi. Its Latin runs stay as they are; at least two parts, so a lone syllable never stands."""
    parts: list[Sequence[str]] = []
    latin = ""
    for char, options in zip(plain, readings, strict=True):
        if tables.is_cjk(char):
            if not options:
                return []
            if latin:
                parts.append((latin,))
                latin = ""
            parts.append(options)
        elif char.isascii() and char.isalnum():
            latin += char
        else:
            return []  # a symbol or space inside: spelled forms of it are guesses
    if latin:
        parts.append((latin,))
    return _pinyin(parts) if len(parts) >= 2 else []


def fold_regex(pattern: str, fold: Fold) -> str:
    """`pattern` with each hanzi outside a class range replaced by its fold (1:1), for a channel
    whose text is homophone-folded: 价格\\d+ finds 价格 and its homophones, as keywords do. A fold
    to several characters (a near-homophone lift) becomes a class of them.

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
            folded = fold(char) if tables.is_cjk(char) else char
            out.append(folded if len(folded) == 1 else f"[{folded}]")
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
