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
- the *homophone* view (service.engine.homophones): with homophones on, the database is compiled
  over the view and the view is all that is scanned: one `str.translate`, one Hyperscan call. A
  pattern whose characters have homophones matches the view where it matches the text and where
  a homophone of it stands; each such hit is read on the text: the pattern's own characters are
  a hit, a homophone counts under its pattern's id (through the pattern's twins,
  `PatternSpec.homophones`) only where the original characters are not, and do not straddle, a
  common word (`Homophones.ordinary`): 沙比 stands for 傻逼, 大厦比较 does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import hyperscan
import re2

from service.engine.homophones import Homophones
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
    # The pattern over the homophone view (same length), hits reported under this pattern's id.
    homophones: tuple[str, ...] = ()


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
    with what locates and checks their hits. The `deferred` ids are only compiled: their hits are
    the caller's to read (FieldMatcher's homophonic patterns)."""

    lengths: dict[int, int | None]
    single: dict[int, bool]
    expressions: list[tuple[int, str]]
    syllables: _SyllableEdges | None = None
    spelled: frozenset[int] = frozenset()  # ids whose ends are checked as pinyin syllables
    deferred: frozenset[int] = frozenset()
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
            compiled.append(stripped.encode())
            if pattern_id in self.deferred:
                # One report is enough: the caller reads every occurrence off the text itself.
                flags.append(hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_SINGLEMATCH)
                continue
            flag = hyperscan.HS_FLAG_UTF8
            checked = pattern_id in self.spelled
            # A boundary can reject the first occurrence and accept a later one: keep them all.
            if self.single[pattern_id] and not removed and not checked:
                flag |= hyperscan.HS_FLAG_SINGLEMATCH
            flags.append(flag)
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
        """The checked spans of `byte_ends` over `text`; `data` is the UTF-8 of `text` or of a
        view with the same byte length per character (the homophone view)."""
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
        return _locate(self._locators[pattern_id], text, single=self.single[pattern_id])


def _locate(locator: re2._Regexp, text: str, *, single: bool) -> list[Span]:
    spans: list[Span] = []
    for match in locator.finditer(text):
        spans.append(match.span())
        if len(spans) >= MAX_SPANS_PER_PATTERN or single:
            break
    return spans


@dataclass(frozen=True, slots=True)
class _Homophonic:
    """A pattern whose hits on the homophone view are read on the text: a literal's occurrences
    are found with str.find (in the text: the pattern itself; in the view: its twins), any other
    pattern is located by RE2 (over the text: itself; over the view: its twins)."""

    pattern_id: int
    single: bool
    length: int
    literal: str | None  # the characters a literal pattern matches; None: located by RE2
    edges: _Edges | _SyllableEdges | None  # a literal's ends
    locator: re2._Regexp | None  # the pattern over the text, when not a literal
    twin_literals: tuple[tuple[str, _Edges | None], ...]  # a literal's twins as characters
    twin_locators: tuple[re2._Regexp, ...]  # the twins over the view, when not a literal
    twinned: bool = field(init=False)
    plain_single: bool = field(init=False)  # a single-match literal without edges: one str.find

    def __post_init__(self) -> None:
        object.__setattr__(self, "twinned", bool(self.twin_literals or self.twin_locators))
        object.__setattr__(self, "plain_single", self.single and self.literal is not None and self.edges is None)

    def exact(self, text: str) -> list[Span]:
        """The pattern's own hits in the text."""
        literal = self.literal
        if literal is None:
            assert self.locator is not None
            return _locate(self.locator, text, single=self.single)
        spans: list[Span] = []
        start = text.find(literal)
        seen = 0
        while start >= 0 and seen < MAX_SPANS_PER_PATTERN:
            seen += 1
            stop = start + self.length
            if self.edges is None or self.edges.hold(text, start, stop):
                spans.append((start, stop))
                if self.single:
                    break
            start = text.find(literal, start + 1)
        return spans

    def homophones(self, text: str, view: str) -> list[Span]:
        """The twins' hits in `view` (the folded `text`) that are not the pattern's own characters."""
        literal = self.literal
        if literal is None:
            spans: list[Span] = []
            for locator in self.twin_locators:
                spans.extend(_locate(locator, view, single=False))
            return spans
        found: list[Span] = []
        for twin, edges in self.twin_literals:
            start = view.find(twin)
            seen = 0
            while start >= 0 and seen < MAX_SPANS_PER_PATTERN:
                seen += 1
                stop = start + self.length
                if not text.startswith(literal, start) and (edges is None or edges.hold(text, start, stop)):
                    found.append((start, stop))
                start = view.find(twin, start + 1)
        return found


View = Callable[[str], NormalizedText | None]
Candidates = list[tuple[int, Span]]  # (pattern id, span) of homophone hits not yet checked


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
    # Finds every character `alternate` can remove (maybe more): text without one skips the call.
    alternate_probe: re.Pattern[str] | None = None
    _main: _Database = field(init=False, repr=False)
    _fold: TranslateTable | None = field(init=False, repr=False)  # the homophone view's, when scanned
    _deferred: dict[int, _Homophonic] = field(init=False, repr=False)  # database id → its pattern

    def __post_init__(self) -> None:
        lengths = {i: p.fixed_length for i, p in enumerate(self.patterns)}
        single = {i: p.single_match for i, p in enumerate(self.patterns)}
        syllable_edges = (
            _SyllableEdges(self.syllables, max(map(len, self.syllables))) if self.syllables and self.spelled else None
        )
        expressions = [(i, p.expression) for i, p in enumerate(self.patterns)]
        self._deferred = {}
        self._fold = None
        if self.homophones is not None and any(p.homophones for p in self.patterns):
            expressions = self._homophone_view(lengths, single, syllable_edges)
            self._fold = self.homophones.fold
        self._main = _Database(
            lengths, single, expressions, syllable_edges, self.spelled, frozenset(self._deferred)
        )

    def _homophone_view(
        self, lengths: dict[int, int | None], single: dict[int, bool], syllables: _SyllableEdges | None
    ) -> list[tuple[int, str]]:
        """The database's expressions over the homophone view. A pattern that mentions no
        character with homophones, and has no twin of its own, compiles as it is (its hits on the
        view are its hits on the text); the others compile as their view (Homophones.view), with
        the twins the view does not cover as extra ids, and are read by `_Homophonic`."""
        assert self.homophones is not None
        expressions: list[tuple[int, str]] = []
        extra = len(self.patterns)
        for i, pattern in enumerate(self.patterns):
            view = self.homophones.view(pattern.expression)
            twins = [t for t in pattern.homophones if t != pattern.expression]
            if view is None and not twins:
                expressions.append((i, pattern.expression))
                continue
            homophonic = _homophonic(i, pattern, syllables if i in self.spelled else None)
            self._deferred[i] = homophonic
            expressions.append((i, view or pattern.expression))
            for twin in dict.fromkeys(twins):
                if twin != view:
                    self._deferred[extra] = homophonic
                    lengths[extra] = lengths[i]
                    single[extra] = True
                    expressions.append((extra, twin))
                    extra += 1
        return expressions

    def scan(self, text: str) -> Hits:
        if not text:
            return {}
        ascii_only = text.isascii()
        fold = self._fold
        # The fold maps hanzi only: ASCII text is its own view.
        view = text if fold is None or ascii_only else text.translate(fold)
        data = view.encode("utf-8", "replace")
        byte_ends = self._main.ends(data)
        hits, candidates = self._read(text, view, data, byte_ends) if byte_ends else ({}, None)
        # Only text with hanzi can have a kept character between words (Normalizer.without_kept).
        probe = self.alternate_probe
        if self.alternate is None or ascii_only or (probe is not None and probe.search(text) is None):
            if candidates:
                self._add_homophones(hits, text, candidates, None)
            return hits
        alternate = self.alternate(text)
        if alternate is None:
            if candidates:
                self._add_homophones(hits, text, candidates, None)
            return hits
        alternate_view = alternate.text if fold is None else alternate.text.translate(fold)
        alternate_data = alternate_view.encode("utf-8", "replace")
        alternate_ends = self._main.ends(alternate_data)
        found, alternate_candidates = (
            self._read(alternate.text, alternate_view, alternate_data, alternate_ends) if alternate_ends else ({}, None)
        )
        for pattern_id, spans in found.items():
            self._merge(hits, pattern_id, [alternate.original_span(*span) for span in spans])
        if candidates:
            self._add_homophones(hits, text, candidates, None)
        if alternate_candidates:
            self._add_homophones(hits, alternate.text, alternate_candidates, alternate)
        return hits

    def _read(
        self, text: str, view: str, data: bytes, byte_ends: list[tuple[int, int]]
    ) -> tuple[Hits, Candidates | None]:
        """The hits over one view of the text (the text's own characters), and its homophone
        candidates. `view` is the folded text (the text itself without homophones) and `data` its
        UTF-8: folded hanzi keep their UTF-8 length (3 bytes), so its byte offsets are the text's."""
        deferred = self._deferred
        if not deferred:
            return self._main.spans(text, data, byte_ends), None
        direct: list[tuple[int, int]] = []
        touched: dict[int, _Homophonic] = {}
        for hit in byte_ends:
            homophonic = deferred.get(hit[0])
            if homophonic is None:
                direct.append(hit)
            else:
                touched[homophonic.pattern_id] = homophonic
        hits = self._main.spans(text, data, direct) if direct else {}
        candidates: Candidates | None = None
        for pattern_id, homophonic in touched.items():
            literal = homophonic.literal
            if homophonic.plain_single:
                assert literal is not None
                start = text.find(literal)
                if start >= 0:
                    hits[pattern_id] = [(start, start + homophonic.length)]
                    continue
            else:
                spans = homophonic.exact(text)
                if spans:
                    hits[pattern_id] = spans
                    if homophonic.single:
                        continue  # one hit is all a single-match pattern reports
            if homophonic.twinned:
                if candidates is None:
                    candidates = []
                candidates.extend((pattern_id, span) for span in homophonic.homophones(text, view))
        return hits, candidates

    def _add_homophones(
        self, hits: Hits, text: str, candidates: Candidates, view: NormalizedText | None
    ) -> None:
        """Add the homophone hits that are new and not ordinary text (大厦比较 holds no 傻逼)."""
        ordinary = self.homophones.ordinary if self.homophones is not None else None
        assert ordinary is not None
        for pattern_id, span in candidates:
            known = hits.get(pattern_id)
            if known and self.patterns[pattern_id].single_match:
                continue
            found = view.original_span(*span) if view is not None else span
            if known and found in known:
                continue
            if not ordinary(text, *span):
                self._merge(hits, pattern_id, [found])

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


def _homophonic(pattern_id: int, pattern: PatternSpec, syllables: _SyllableEdges | None) -> _Homophonic:
    """How `pattern`'s hits on the homophone view are read: as a literal when it and its twins are
    fixed characters (with `\\b` at most at their ends), else by RE2."""
    literal = _literal_chars(pattern.expression) if pattern.fixed_length is not None else None
    twins = [_literal_chars(twin) for twin in pattern.homophones]
    if literal is not None and all(twin is not None and len(twin[0]) == len(literal[0]) for twin in twins):
        chars, edges = literal
        return _Homophonic(
            pattern_id,
            pattern.single_match,
            len(chars),
            chars,
            syllables or edges,
            None,
            tuple(twin for twin in twins if twin is not None),
            (),
        )
    return _Homophonic(
        pattern_id,
        pattern.single_match,
        pattern.fixed_length or 0,
        None,
        None,
        re2.compile(pattern.expression, _RE2_OPTIONS),
        (),
        tuple(re2.compile(twin, _RE2_OPTIONS) for twin in pattern.homophones),
    )


_PLAIN_LITERAL: Final = re.compile(r"[^\\\[\](){}.*+?|^$]+")
_LITERAL_CHAR: Final = re.compile(r"\\x([0-9a-fA-F]{2})|\\x\{([0-9a-fA-F]+)\}|([^\\\[\](){}.*+?|^$])")


def _literal_chars(expression: str) -> tuple[str, _Edges | None] | None:
    """The characters `expression` matches and its `\\b` ends, when it is a literal (characters
    and `\\x` escapes, `\\b` at most at its ends); None otherwise."""
    if _PLAIN_LITERAL.fullmatch(expression):
        return expression, None
    stripped, removed = strip_boundaries(expression)
    edges = _literal_edges(expression, removed)
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


def _literal_edges(expression: str, removed: int) -> _Edges | None:
    """Boundaries of a literal written as `\\b…\\b`; None when they sit anywhere else."""
    if not removed:
        return None
    starts = expression.startswith(_BOUNDARY)
    ends = expression.endswith(_BOUNDARY) and not expression.endswith("\\" + _BOUNDARY)
    if removed != int(starts) + int(ends):
        return None
    return _Edges(starts, ends)
