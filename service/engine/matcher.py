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

This module reads the views and merges their hits; patterns.py holds the pattern spec, the
linear-time check and the end checks, pattern_database.py one compiled database and its hits.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

import re2

from service.engine.folds import FoldedHits
from service.engine.homophones import Homophones
from service.engine.normalize import NormalizedText, TranslateTable
from service.engine.pattern_database import PatternDatabase
from service.engine.patterns import (
    MAX_SPANS_PER_PATTERN,
    RE2_OPTIONS,
    Edges,
    Hits,
    PatternSpec,
    Span,
    SyllableEdges,
    literal_chars,
    locate,
)
from service.engine.stand_ins import StandIns


@dataclass(frozen=True, slots=True)
class _Homophonic:
    """A pattern whose hits on the homophone view are read on the text: a literal's occurrences
    are found with str.find (in the text: the pattern itself; in the view: its twins), any other
    pattern is located by RE2 (over the text: itself; over the view: its twins)."""

    pattern_id: int
    single: bool
    length: int
    literal: str | None  # the characters a literal pattern matches; None: located by RE2
    edges: Edges | SyllableEdges | None  # a literal's ends
    locator: re2._Regexp | None  # the pattern over the text, when not a literal
    twin_literals: tuple[tuple[str, Edges | None], ...]  # a literal's twins as characters
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
            return locate(self.locator, text, single=self.single)
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
                spans.extend(locate(locator, view, single=False))
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
    stand_ins: StandIns | None = None  # emoji read as hanzi (engine/stand_ins.py), with homophones
    _main: PatternDatabase = field(init=False, repr=False)
    _fold: TranslateTable | None = field(init=False, repr=False)  # the homophone view's, when scanned
    _deferred: dict[int, _Homophonic] = field(init=False, repr=False)  # database id → its pattern
    _homophonic_ids: frozenset[int] = field(init=False, repr=False)  # the patterns _deferred reads

    def __post_init__(self) -> None:
        lengths = {i: p.fixed_length for i, p in enumerate(self.patterns)}
        single = {i: p.single_match for i, p in enumerate(self.patterns)}
        syllable_edges = (
            SyllableEdges(self.syllables, max(map(len, self.syllables))) if self.syllables and self.spelled else None
        )
        expressions = [(i, p.expression) for i, p in enumerate(self.patterns)]
        self._deferred = {}
        self._fold = None
        if self.homophones is not None and any(p.homophones for p in self.patterns):
            expressions = self._homophone_view(lengths, single, syllable_edges)
            self._fold = self.homophones.fold
        self._main = PatternDatabase(
            lengths, single, expressions, syllable_edges, self.spelled, frozenset(self._deferred)
        )
        self._homophonic_ids = frozenset(h.pattern_id for h in self._deferred.values())

    def _homophone_view(
        self, lengths: dict[int, int | None], single: dict[int, bool], syllables: SyllableEdges | None
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
        """Every pattern's spans in `text`; `FoldedHits` when some exist only through a fold."""
        if not text:
            return {}
        ascii_only = text.isascii()
        fold = self._fold
        # The fold maps hanzi only: ASCII text is its own view.
        view = text if fold is None or ascii_only else text.translate(fold)
        data = view.encode("utf-8", "replace")
        byte_ends = self._main.ends(data)
        hits, candidates = self._read(text, view, data, byte_ends) if byte_ends else ({}, None)
        folded: set[tuple[int, Span]] = set()
        # Only text with hanzi can have a kept character between words (Normalizer.without_kept).
        probe = self.alternate_probe
        alternate = None
        alternate_candidates: Candidates | None = None
        if self.alternate is not None and not ascii_only and (probe is None or probe.search(text) is not None):
            alternate = self.alternate(text)
        if alternate is not None:
            alternate_view = alternate.text if fold is None else alternate.text.translate(fold)
            alternate_data = alternate_view.encode("utf-8", "replace")
            alternate_ends = self._main.ends(alternate_data)
            found, alternate_candidates = (
                self._read(alternate.text, alternate_view, alternate_data, alternate_ends)
                if alternate_ends
                else ({}, None)
            )
            for pattern_id, spans in found.items():
                self._merge(hits, pattern_id, [alternate.original_span(*span) for span in spans])
        if candidates:
            self._add_homophones(hits, text, candidates, None, folded)
        if alternate is not None and alternate_candidates:
            self._add_homophones(hits, alternate.text, alternate_candidates, alternate, folded)
        if self.stand_ins is not None and not ascii_only:
            self._add_stand_ins(hits, text, folded)
        return FoldedHits(hits, folded) if folded else hits

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

    def _add_stand_ins(self, hits: Hits, text: str, folded: set[tuple[int, Span]]) -> None:
        """Add the hits of the stand-in views that read one of their emoji (engine/stand_ins.py)."""
        assert self.stand_ins is not None
        positions = self.stand_ins.positions(text)
        if not positions:
            return

        def reads_emoji(span: Span) -> bool:
            # Positions are ascending: the first at or after the span's start decides, in O(log n)
            # (trying every position for every span made an emoji-dense text cost O(n²)).
            first = bisect_left(positions, span[0])
            return first < len(positions) and positions[first] < span[1]

        for table in self.stand_ins.tables:
            view = text.translate(table)
            data = view.encode("utf-8", "replace")
            ends = self._main.ends(data)
            if not ends:
                continue
            found, candidates = self._read(text, view, data, ends)
            for pattern_id, spans in found.items():
                if pattern_id in self._homophonic_ids:
                    continue  # its exact hits on the text: the main scan has them
                for span in filter(reads_emoji, spans):
                    known = hits.get(pattern_id)
                    if not known or span not in known:
                        self._merge(hits, pattern_id, [span])
                        folded.add((pattern_id, span))
            if candidates:
                self._add_homophones(hits, text, [c for c in candidates if reads_emoji(c[1])], None, folded)

    def _add_homophones(
        self, hits: Hits, text: str, candidates: Candidates, view: NormalizedText | None,
        folded: set[tuple[int, Span]],
    ) -> None:
        """Add the homophone hits that are new and not ordinary text (大厦比较 holds no 傻逼);
        each is a folded reading (engine/folds.py)."""
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
                folded.add((pattern_id, found))

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


def _homophonic(pattern_id: int, pattern: PatternSpec, syllables: SyllableEdges | None) -> _Homophonic:
    """How `pattern`'s hits on the homophone view are read: as a literal when it and its twins are
    fixed characters (with `\\b` at most at their ends), else by RE2."""
    literal = literal_chars(pattern.expression) if pattern.fixed_length is not None else None
    twins = [literal_chars(twin) for twin in pattern.homophones]
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
        re2.compile(pattern.expression, RE2_OPTIONS),
        (),
        tuple(re2.compile(twin, RE2_OPTIONS) for twin in pattern.homophones),
    )
