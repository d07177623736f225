"""Patterns as the matcher compiles them, and the checks a hit's ends must pass.

`PatternSpec` is what the rule compiler hands over; `check_expression` refuses what cannot run in
linear time (RE2 and Hyperscan); `strip_boundaries` takes the `\b` assertions out of what
Hyperscan compiles (matcher.py says why), and `Edges` / `SyllableEdges` check them, or a pinyin
spelling's ends, on the text; `literal_chars` reads a pattern that is only characters, so that
its occurrences can be found with `str.find`; `locate` finds a variable pattern's exact spans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

import hyperscan
import re2

MAX_SPANS_PER_PATTERN: Final = 64

Span = tuple[int, int]
Hits = dict[int, list[Span]]


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """A pattern over normalised text, in the syntax Hyperscan and RE2 share."""

    expression: str
    fixed_length: int | None  # in characters; None when the length varies
    single_match: bool
    # The pattern over the homophone view (same length), hits reported under this pattern's id.
    homophones: tuple[str, ...] = ()
    # Every hit is a folded reading (engine/folds.py): a variant as ambiguous as a fold, such as a
    # keyword spelled by its pinyin initials (cnm is also CNN's lower case, read by `case`).
    folded: bool = False


class PatternCompileError(Exception):
    """A pattern was refused by the linear-time engines; `index` names it."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # errors are reported as pack issues, not on stderr
    return options


RE2_OPTIONS: Final = _re2_options()


def check_expression(expression: str) -> str | None:
    """Why `expression` cannot run in linear time (RE2 and Hyperscan), or None when it can."""
    try:
        re2.compile(expression, RE2_OPTIONS)
    except re2.error as exc:
        message = exc.args[0] if exc.args else exc
        text = message.decode() if isinstance(message, bytes) else str(message)
        return f"not a linear-time (RE2) regex: {text}"
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(expressions=[expression.encode()], flags=[hyperscan.HS_FLAG_UTF8])
    except hyperscan.error as exc:
        return _hyperscan_reason(str(exc))
    return None


def _hyperscan_reason(message: str) -> str:
    """Hyperscan's refusal in the pack author's terms (its own names flags the author cannot set)."""
    if "matches empty buffer" in message:
        return (
            "the pattern can match empty text (like `a*`), so it would match every message: "
            "make it need a character (`a+`)"
        )
    return f"refused by Hyperscan: {message}"


_BOUNDARY: Final = "\\b"
_WORD: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def strip_boundaries(expression: str) -> tuple[str, int]:
    """`expression` without its `\b` assertions (outside classes) and how many were removed."""
    out: list[str] = []
    removed = 0
    i = 0
    in_class = False
    while i < len(expression):
        ch = expression[i]
        if ch == "\\" and i + 1 < len(expression):
            pair = expression[i : i + 2]
            if pair == _BOUNDARY and not in_class:
                removed += 1
            else:
                out.append(pair)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out), removed


# Assertions that read where the scanned buffer starts or ends (or, \B, whether a word goes on
# there): true at a text's ends, false where that text sits inside a joined batch.
_BUFFER_ESCAPES: Final = frozenset("AzZBG")


def without_buffer_ends(expression: str) -> str | None:
    """`expression` (without `\b`) with its `^`, `$` and escapes that read the buffer's ends
    removed, when it has any; None when it has none. Removing an assertion only widens what a
    pattern matches, so the result finds every text the pattern can match in (and maybe more)."""
    out: list[str] = []
    removed = False
    i = 0
    in_class = False
    while i < len(expression):
        ch = expression[i]
        if ch == "\\" and i + 1 < len(expression):
            if not in_class and expression[i + 1] in _BUFFER_ESCAPES:
                removed = True
            else:
                out.append(expression[i : i + 2])
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            out.append(ch)
            # A `]` first in a class (or after `^`) is a member, not the class's end.
            for opening in ("^", "]"):
                if expression[i + 1 : i + 2] == opening:
                    out.append(opening)
                    i += 1
        elif ch == "]" and in_class:
            in_class = False
            out.append(ch)
        elif ch in "^$" and not in_class:
            removed = True
        else:
            out.append(ch)
        i += 1
    return "".join(out) if removed else None


@dataclass(frozen=True, slots=True)
class Edges:
    """A literal's `\b` at its start and/or end, checked on the normalised text."""

    start: bool
    end: bool

    def hold(self, text: str, start: int, end: int) -> bool:
        if self.start and start > 0 and text[start - 1] in _WORD:
            return False
        return not (self.end and end < len(text) and text[end] in _WORD)


# How many letters beyond a pinyin spelling's end are read as syllables (SyllableEdges): enough for
# any real run of typed pinyin, and it keeps each check O(1) whatever the length of the text.
SYLLABLE_WINDOW: Final = 48


@dataclass(frozen=True, slots=True)
class SyllableEdges:
    """A pinyin spelling's ends: it may sit at the start or the end of a longer run of letters when
    the rest of the run reads as pinyin syllables too (caonimade holds caonima + de, nigeshabi
    holds ni ge + shabi), not when the rest reads as something else (shabiz, animal), nor in the
    middle of a run (zhichishiri holds no chishi: a long run of pinyin holds every pair of
    syllables somewhere).

    Only the `SYLLABLE_WINDOW` letters next to the spelling are read: a longer rest holds when its
    nearest letters split into syllables up to the window's edge (where a syllable may be cut).
    Reading the whole run made one text of n letters cost O(n) per hit and O(n²) in all (a
    65,536-letter run took 37 s); each check is now bounded, and a text's cost linear.
    """

    syllables: frozenset[str]
    longest: int
    _backwards: frozenset[str] = field(init=False, repr=False, compare=False)  # each syllable reversed

    def __post_init__(self) -> None:
        object.__setattr__(self, "_backwards", frozenset(s[::-1] for s in self.syllables))

    def hold(self, text: str, start: int, end: int) -> bool:
        letters_before = start > 0 and text[start - 1] in _LETTERS
        letters_after = end < len(text) and text[end] in _LETTERS
        if letters_before and letters_after:
            return False
        if letters_after:
            stop = end
            limit = min(len(text), end + SYLLABLE_WINDOW)
            while stop < limit and text[stop] in _LETTERS:
                stop += 1
            cut = stop < len(text) and text[stop] in _LETTERS
            return self._spelled(text[end:stop], cut)
        if letters_before:
            first = start
            limit = max(0, start - SYLLABLE_WINDOW)
            while first > limit and text[first - 1] in _LETTERS:
                first -= 1
            cut = first > 0 and text[first - 1] in _LETTERS
            # Read right to left: reversed syllables over the reversed letters.
            return self._spelled(text[first:start][::-1], cut, reverse=True)
        return True

    def _spelled(self, letters: str, cut: bool, *, reverse: bool = False) -> bool:
        """Whether `letters` split into syllables (reversed ones with `reverse`); when `cut` (the
        run goes on past the window), whether a split reaches within a syllable of its end."""
        syllables = self._backwards if reverse else self.syllables
        # reachable[i]: letters[:i] splits into syllables.
        reachable = [True] + [False] * len(letters)
        for stop in range(1, len(letters) + 1):
            for size in range(1, min(self.longest, stop) + 1):
                if reachable[stop - size] and letters[stop - size : stop] in syllables:
                    reachable[stop] = True
                    break
        if not cut:
            return reachable[-1]
        return any(reachable[max(0, len(letters) - self.longest + 1) :])


_LETTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz")


def locate(locator: re2._Regexp, text: str, *, single: bool) -> list[Span]:
    spans: list[Span] = []
    for match in locator.finditer(text):
        spans.append(match.span())
        if len(spans) >= MAX_SPANS_PER_PATTERN or single:
            break
    return spans


_PLAIN_LITERAL: Final = re.compile(r"[^\\\[\](){}.*+?|^$]+")
_LITERAL_CHAR: Final = re.compile(r"\\x([0-9a-fA-F]{2})|\\x\{([0-9a-fA-F]+)\}|([^\\\[\](){}.*+?|^$])")


def literal_chars(expression: str) -> tuple[str, Edges | None] | None:
    """The characters `expression` matches and its `\\b` ends, when it is a literal (characters
    and `\\x` escapes, `\\b` at most at its ends); None otherwise."""
    if _PLAIN_LITERAL.fullmatch(expression):
        return expression, None
    stripped, removed = strip_boundaries(expression)
    edges = literal_edges(expression, removed)
    if removed and edges is None:
        return None
    chars: list[str] = []
    position = 0
    for match in _LITERAL_CHAR.finditer(stripped):
        if match.start() != position:
            return None
        position = match.end()
        short, long, plain = match.groups()
        chars.append(plain if plain is not None else chr(int(short or long, 16)))
    if position != len(stripped) or not chars:
        return None
    return "".join(chars), edges


def literal_edges(expression: str, removed: int) -> Edges | None:
    """Boundaries of a literal written as `\\b…\\b`; None when they sit anywhere else."""
    if not removed:
        return None
    starts = expression.startswith(_BOUNDARY)
    ends = expression.endswith(_BOUNDARY) and not expression.endswith("\\" + _BOUNDARY)
    if removed != int(starts) + int(ends):
        return None
    return Edges(starts, ends)
