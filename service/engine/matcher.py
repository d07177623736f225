"""One compiled multi-pattern database per scanned field; `scan` returns spans per pattern id.

Hyperscan scans the UTF-8 bytes of the normalised text once for all patterns of a field
(~2 µs for 10k keywords). Start offsets are not asked of Hyperscan (its start-of-match mode makes
databases ~5x larger and is no faster): a fixed-length pattern starts at end − length, a
variable-length one is located by RE2 (linear time) only when Hyperscan reported a hit.

Patterns flagged `single_match` report once per scan, which bounds callback work on hostile
input; the others (used by proximity conditions) keep up to `MAX_SPANS_PER_PATTERN` spans.

Word boundaries (`\b`) are stripped from what Hyperscan compiles: they made a 10k-keyword database
compile 6x slower (2.3 s vs 0.38 s measured here). Removing an assertion only widens what a
pattern matches, so Hyperscan stays a complete prefilter; the boundary is then checked exactly:
in Python for a literal's two ends, by RE2 (which runs the original pattern) otherwise.

Two more views of a text can be scanned, both 1:1 or mapped back to the text's own offsets:
- the *alternate* view (`Normalizer.without_kept`): kept characters between words removed, so a
  stand-in emoji or a pattern's symbol used as a separator (畜🥧牲, 红★包) still lets the plain
  keyword match; scanned with the same database only when such a character is present;
- the *homophone* view: the text folded character by character to homophone representatives and
  scanned with a second database of each pattern's homophone twins (`PatternSpec.homophones`).
  A twin's hit counts under its pattern's id only where the original characters are not, and do
  not straddle, a common word (`Homophones.ordinary`): 沙比 stands for 傻逼, 大厦比较 does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import hyperscan
import re2

from service.engine.normalize import NormalizedText, TranslateTable

MAX_SPANS_PER_PATTERN: Final = 64

Span = tuple[int, int]
Hits = dict[int, list[Span]]


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """A pattern over normalised text, in the syntax Hyperscan and RE2 share."""

    expression: str
    fixed_length: int | None  # in characters; None when the length varies
    single_match: bool
    # The pattern over homophone-folded text (same length), hits reported under this pattern's id.
    homophones: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Homophones:
    """The homophone view: a 1:1 fold, and the common words a homophone hit must not be part of."""

    fold: TranslateTable
    words: frozenset[str]  # common words of 2 to `longest` characters
    longest: int
    characters: frozenset[str]  # the most frequent characters

    def ordinary(self, text: str, start: int, end: int) -> bool:
        """Whether text[start:end] is ordinary text: it reads entirely as common words and the most
        frequent characters (全是 is no 拳师, 女权是 no 女拳师), or a common word crosses one of
        its ends (大厦比较 holds 厦比 only across 大厦 and 比较)."""
        if self._reads_as_words(text[start:end]):
            return True
        words = self.words
        longest = self.longest
        for first in range(max(0, start - longest + 1), end):
            for stop in range(max(first + 2, start + 1), min(len(text), first + longest) + 1):
                if first >= start and stop <= end:
                    continue  # inside the span: read above (田园女圈 keeps its 田园)
                if text[first:stop] in words:
                    return True
        return False

    def _reads_as_words(self, piece: str) -> bool:
        # reachable[i]: piece[:i] splits into common words and frequent characters.
        reachable = [True] + [False] * len(piece)
        for stop in range(1, len(piece) + 1):
            if reachable[stop - 1] and piece[stop - 1] in self.characters:
                reachable[stop] = True
                continue
            for size in range(2, min(self.longest, stop) + 1):
                if reachable[stop - size] and piece[stop - size : stop] in self.words:
                    reachable[stop] = True
                    break
        return reachable[-1]


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


_RE2_OPTIONS: Final = _re2_options()


def check_expression(expression: str) -> str | None:
    """Why `expression` cannot run in linear time (RE2 and Hyperscan), or None when it can."""
    try:
        re2.compile(expression, _RE2_OPTIONS)
    except re2.error as exc:
        message = exc.args[0] if exc.args else exc
        text = message.decode() if isinstance(message, bytes) else str(message)
        return f"not a linear-time (RE2) regex: {text}"
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(expressions=[expression.encode()], flags=[hyperscan.HS_FLAG_UTF8])
    except hyperscan.error as exc:
        return f"refused by Hyperscan: {exc}"
    return None


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



@dataclass(frozen=True, slots=True)
class _Edges:
    """A literal's `\b` at its start and/or end, checked on the normalised text."""

    start: bool
    end: bool

    def hold(self, text: str, start: int, end: int) -> bool:
        if self.start and start > 0 and text[start - 1] in _WORD:
            return False
        return not (self.end and end < len(text) and text[end] in _WORD)


@dataclass(frozen=True, slots=True)
class _SyllableEdges:
    """A pinyin spelling's ends: it may sit at the start or the end of a longer run of letters when
    the rest of the run reads as pinyin syllables too (caonimade holds caonima + de, nigeshabi
    holds ni ge + shabi), not when the rest reads as something else (shabiz, animal), nor in the
    middle of a run (zhichishiri holds no chishi: a long run of pinyin holds every pair of
    syllables somewhere)."""

    syllables: frozenset[str]
    longest: int

    def hold(self, text: str, start: int, end: int) -> bool:
        before = start
        while before > 0 and text[before - 1] in _LETTERS:
            before -= 1
        after = end
        while after < len(text) and text[after] in _LETTERS:
            after += 1
        if before != start and after != end:
            return False
        return self._spelled(text[before:start]) and self._spelled(text[end:after])

    def _spelled(self, letters: str) -> bool:
        if not letters:
            return True
        # reachable[i]: letters[:i] splits into syllables.
        reachable = [True] + [False] * len(letters)
        for stop in range(1, len(letters) + 1):
            for size in range(1, min(self.longest, stop) + 1):
                if reachable[stop - size] and letters[stop - size : stop] in self.syllables:
                    reachable[stop] = True
                    break
        return reachable[-1]


_LETTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz")


@dataclass
class _Database:
    """One Hyperscan database over some of a field's patterns (ids are the field's pattern ids),
    with what locates and checks their hits."""

    lengths: dict[int, int | None]
    single: dict[int, bool]
    expressions: list[tuple[int, str]]
    syllables: _SyllableEdges | None = None
    spelled: frozenset[int] = frozenset()  # ids whose ends are checked as pinyin syllables
    _database: hyperscan.Database = field(init=False, repr=False)
    _locators: dict[int, re2._Regexp] = field(init=False, repr=False)
    _edges: dict[int, _Edges | _SyllableEdges] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        flags = []
        compiled: list[bytes] = []
        self._locators = {}
        self._edges = {}
        for pattern_id, expression in self.expressions:
            stripped, removed = strip_boundaries(expression)
            flag = hyperscan.HS_FLAG_UTF8
            checked = pattern_id in self.spelled
            # A boundary can reject the first occurrence and accept a later one: keep them all.
            if self.single[pattern_id] and not removed and not checked:
                flag |= hyperscan.HS_FLAG_SINGLEMATCH
            flags.append(flag)
            compiled.append(stripped.encode())
            edges = _literal_edges(expression, removed)
            if self.lengths[pattern_id] is None or (removed and edges is None):
                self._locators[pattern_id] = re2.compile(expression, _RE2_OPTIONS)
            elif checked and self.syllables is not None:
                self._edges[pattern_id] = self.syllables
            elif edges is not None:
                self._edges[pattern_id] = edges
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            database.compile(
                expressions=compiled,
                ids=[pattern_id for pattern_id, _ in self.expressions],
                elements=len(compiled),
                flags=flags,
            )
        except hyperscan.error as exc:
            raise PatternCompileError(-1, str(exc)) from exc
        self._database = database

    def scan(self, text: str) -> Hits:
        if not text:
            return {}
        data = text.encode("utf-8", "replace")
        byte_ends = self.ends(data)
        return self.spans(text, data, byte_ends) if byte_ends else {}

    def ends(self, data: bytes) -> list[tuple[int, int]]:
        """(pattern id, end byte offset) of each hit, before any check."""
        byte_ends: list[tuple[int, int]] = []
        counts: dict[int, int] = {}

        def on_match(pattern_id: int, _from: int, to: int, _flags: int, _context: object) -> None:
            seen = counts.get(pattern_id, 0)
            if seen < MAX_SPANS_PER_PATTERN:
                counts[pattern_id] = seen + 1
                byte_ends.append((pattern_id, to))

        self._database.scan(data, match_event_handler=on_match)
        return byte_ends

    def spans(self, text: str, data: bytes, byte_ends: list[tuple[int, int]]) -> Hits:
        ascii_only = len(data) == len(text)
        char_end: dict[int, int] = {}
        if not ascii_only:
            # One incremental decode over the sorted ends: O(len(text)) whatever the hit count.
            position_bytes = 0
            position_chars = 0
            for end in sorted({end for _, end in byte_ends}):
                position_chars += len(data[position_bytes:end].decode("utf-8", "replace"))
                position_bytes = end
                char_end[end] = position_chars
        hits: Hits = {}
        edges = self._edges
        for pattern_id, end in byte_ends:
            if pattern_id in self._locators:
                if pattern_id not in hits:
                    hits[pattern_id] = self._locate(pattern_id, text)
                continue
            stop = end if ascii_only else char_end[end]
            length = self.lengths[pattern_id]
            assert length is not None
            start = stop - length
            check = edges.get(pattern_id)
            if check is not None and not check.hold(text, start, stop):
                continue
            spans = hits.setdefault(pattern_id, [])
            if not (check is not None and self.single[pattern_id] and spans):
                spans.append((start, stop))
        return {pid: spans for pid, spans in hits.items() if spans}

    def _locate(self, pattern_id: int, text: str) -> list[Span]:  # exact spans of a variable pattern
        spans: list[Span] = []
        for match in self._locators[pattern_id].finditer(text):
            spans.append(match.span())
            if len(spans) >= MAX_SPANS_PER_PATTERN or self.single[pattern_id]:
                break
        return spans


View = Callable[[str], NormalizedText | None]


@dataclass
class FieldMatcher:
    """Scans one field's normalised text for every pattern compiled into its database.

    `alternate` and `homophones` switch on the second and third views (module docstring);
    `syllables` (toneless pinyin syllables) checks the ends of the patterns in `spelled`.
    """

    patterns: tuple[PatternSpec, ...]
    alternate: View | None = None
    homophones: Homophones | None = None
    syllables: frozenset[str] = frozenset()
    spelled: frozenset[int] = frozenset()
    _main: _Database = field(init=False, repr=False)
    _homophone: _Database | None = field(init=False, repr=False)
    _twin_of: list[int] = field(init=False, repr=False)  # homophone database id → pattern id
    _twin_literals: dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lengths = {i: p.fixed_length for i, p in enumerate(self.patterns)}
        single = {i: p.single_match for i, p in enumerate(self.patterns)}
        syllable_edges = (
            _SyllableEdges(self.syllables, max(map(len, self.syllables))) if self.syllables and self.spelled else None
        )
        self._main = _Database(
            lengths, single, [(i, p.expression) for i, p in enumerate(self.patterns)], syllable_edges, self.spelled
        )
        # The homophone database numbers its twins itself (a pattern can have two). A twin's hit
        # can be refused (a common word), so a plain-literal twin reports once and its further
        # occurrences are found with str.find (SINGLEMATCH also compiles ~15x faster: 0.12 s vs
        # 1.9 s for this pack's ~850 twins); other twins report every hit.
        twins = [(i, twin) for i, p in enumerate(self.patterns) for twin in p.homophones]
        self._twin_of = [pattern_id for pattern_id, _ in twins]
        self._twin_literals = {
            n: twin for n, (i, twin) in enumerate(twins) if lengths[i] is not None and _is_plain_literal(twin)
        }
        self._homophone = None
        if twins and self.homophones is not None:
            self._homophone = _Database(
                {n: lengths[i] for n, (i, _) in enumerate(twins)},
                {n: n in self._twin_literals for n in range(len(twins))},
                list(enumerate(twin for _, twin in twins)),
            )

    def scan(self, text: str) -> Hits:
        if not text:
            return {}
        data = text.encode("utf-8", "replace")
        main_ends = self._main.ends(data)
        hits = self._main.spans(text, data, main_ends) if main_ends else {}
        alternate = self.alternate(text) if self.alternate is not None else None
        if alternate is not None:
            for pattern_id, spans in self._main.scan(alternate.text).items():
                self._merge(hits, pattern_id, [alternate.original_span(*span) for span in spans])
        if self._homophone is not None:
            self._scan_homophones(text, hits, None, frozenset(main_ends))
            if alternate is not None:
                self._scan_homophones(alternate.text, hits, alternate, frozenset())
        return hits

    def _scan_homophones(
        self, text: str, hits: Hits, view: NormalizedText | None, exact: frozenset[tuple[int, int]]
    ) -> None:
        """Twins' hits over the folded `text`, refused where ordinary. `exact` are the main scan's
        (pattern id, end byte): the fold maps common hanzi to common hanzi, three UTF-8 bytes
        each, so a twin ending at the same byte as its pattern is the keyword itself, already
        reported, and is dropped before any offset is decoded (most twin hits are such)."""
        assert self._homophone is not None
        assert self.homophones is not None
        folded = text.translate(self.homophones.fold)
        data = folded.encode("utf-8", "replace")
        twin_of = self._twin_of
        ends = [(twin, end) for twin, end in self._homophone.ends(data) if (twin_of[twin], end) not in exact]
        if not ends:
            return
        ordinary = self.homophones.ordinary
        for twin, spans in self._homophone.spans(folded, data, ends).items():
            literal = self._twin_literals.get(twin)
            if literal is not None:
                spans = _occurrences(folded, literal, spans[0][0])
            pattern_id = twin_of[twin]
            if view is not None:
                mapped = [(span, view.original_span(*span)) for span in spans]
            else:
                mapped = [(span, span) for span in spans]
            known = hits.get(pattern_id, ())
            # The exact characters were reported already (and need no check); a homophone must
            # not be ordinary text: 大厦比较 holds no 傻逼.
            fresh = [found for span, found in mapped if found not in known and not ordinary(text, *span)]
            if fresh:
                self._merge(hits, pattern_id, fresh)

    def _merge(self, hits: Hits, pattern_id: int, spans: list[Span]) -> None:
        """Add another view's spans under the pattern's id, as one scan would have reported them."""
        found = hits.get(pattern_id)
        if found is None:
            hits[pattern_id] = spans[:1] if self.patterns[pattern_id].single_match else spans
            return
        if self.patterns[pattern_id].single_match:
            return
        for span in spans:
            if span not in found and len(found) < MAX_SPANS_PER_PATTERN:
                found.append(span)


def _is_plain_literal(expression: str) -> bool:
    """Whether `expression` matches exactly its own characters (letters, digits, hanzi)."""
    return all(ch.isalnum() for ch in expression)


def _occurrences(text: str, literal: str, first: int) -> list[Span]:
    spans: list[Span] = []
    start = first
    while start >= 0 and len(spans) < MAX_SPANS_PER_PATTERN:
        spans.append((start, start + len(literal)))
        start = text.find(literal, start + 1)
    return spans


def _literal_edges(expression: str, removed: int) -> _Edges | None:
    """Boundaries of a literal written as `\\b…\\b`; None when they sit anywhere else."""
    if not removed:
        return None
    starts = expression.startswith(_BOUNDARY)
    ends = expression.endswith(_BOUNDARY) and not expression.endswith("\\" + _BOUNDARY)
    if removed != int(starts) + int(ends):
        return None
    return _Edges(starts, ends)
