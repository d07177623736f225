"""One field's patterns compiled for Hyperscan, with what locates and checks their hits.

The matcher (matcher.py) owns one per field and scans it over each view of the text; `ends` is
the scan of one text (pattern id, end byte offset), `ends_batch` the scan of many texts joined in
one buffer, and `spans` turns a text's ends into checked character spans on the text.

The patterns are split over up to three Hyperscan databases, each scanned without
`HS_FLAG_SINGLEMATCH` (which reports a pattern once per *buffer*, so once per batch):
- *literals* (most of a pack: keywords, their variants and homophone twins), compiled with the
  pure-literal compiler: every occurrence reported, and quick to compile (the same ~4,000 patterns
  of the default pack's text field: 0.06 s; as regexes without the single-match flag: 2.4 s);
- *regexes* that read only the characters they match, scanned like the literals;
- *anchored* regexes, which read where the buffer starts or ends (`^`, `$`, `\\A`, `\\z`, `\\Z`,
  `\\B`): in a joined buffer those are the batch's ends, not each text's. A batch scans them
  without their anchors (a wider pattern, `probe`) over the joined buffer, then each text that
  probe reported in, alone, with the anchors.

Either way a text's reports are the same: the first `MAX_SPANS_PER_PATTERN` of each pattern, in
the order of their end offsets. A pattern that matches across two joined texts is reported in the
second one; `spans` drops such a hit (its start falls before the text) or never finds it on the
text (a variable-length pattern is located by RE2 on the text alone, a homophonic one is read off
the text by the matcher), so a batch's reports give each text exactly its own hits.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final

import hyperscan
import re2

from service.engine.patterns import (
    MAX_SPANS_PER_PATTERN,
    RE2_OPTIONS,
    Edges,
    Hits,
    PatternCompileError,
    Span,
    SyllableEdges,
    literal_chars,
    literal_edges,
    locate,
    strip_boundaries,
    without_buffer_ends,
)

Report = tuple[int, int]  # (pattern id, end byte offset)
_BY_END: Final = itemgetter(1)


@dataclass
class PatternDatabase:
    """One field's patterns (ids are the field's pattern ids) in Hyperscan databases, with what
    locates and checks their hits. The `deferred` ids are only reported: their hits are the
    caller's to read (FieldMatcher's homophonic patterns)."""

    lengths: dict[int, int | None]
    single: dict[int, bool]
    expressions: list[tuple[int, str]]
    syllables: SyllableEdges | None = None
    spelled: frozenset[int] = frozenset()  # ids whose ends are checked as pinyin syllables
    deferred: frozenset[int] = frozenset()
    _literals: hyperscan.Database | None = field(init=False, repr=False)
    _regexes: hyperscan.Database | None = field(init=False, repr=False)
    _anchored: hyperscan.Database | None = field(init=False, repr=False)
    # The anchored patterns without their anchors; None when there are none, or when one of them
    # cannot be compiled so (it would match empty text): then a batch scans every text alone.
    _anchored_probe: hyperscan.Database | None = field(init=False, repr=False)
    _locators: dict[int, re2._Regexp] = field(init=False, repr=False)
    _edges: dict[int, Edges | SyllableEdges] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        literals: list[tuple[int, bytes]] = []
        regexes: list[tuple[int, bytes]] = []
        anchored: list[tuple[int, bytes]] = []
        probes: list[tuple[int, bytes]] = []
        self._locators = {}
        self._edges = {}
        for pattern_id, expression in self.expressions:
            stripped, removed = strip_boundaries(expression)
            chars = literal_chars(stripped)
            relaxed = None if chars is not None else without_buffer_ends(stripped)
            if chars is not None:
                literals.append((pattern_id, chars[0].encode()))
            elif relaxed is not None:
                anchored.append((pattern_id, stripped.encode()))
                probes.append((pattern_id, relaxed.encode()))
            else:
                regexes.append((pattern_id, stripped.encode()))
            if pattern_id in self.deferred:
                continue
            edges = literal_edges(expression, removed)
            if self.lengths[pattern_id] is None or (removed and edges is None):
                self._locators[pattern_id] = re2.compile(expression, RE2_OPTIONS)
            elif pattern_id in self.spelled and self.syllables is not None:
                self._edges[pattern_id] = self.syllables
            elif edges is not None:
                self._edges[pattern_id] = edges
        self._literals = compiled(literals, literal=True)
        self._regexes = compiled(regexes, literal=False)
        self._anchored = compiled(anchored, literal=False)
        try:
            self._anchored_probe = compiled(probes, literal=False)
        except PatternCompileError:
            self._anchored_probe = None

    def __getstate__(self) -> dict[str, object]:
        # Hyperscan databases do not pickle: they travel serialised (hyperscan.dumpb), so a pack
        # compiled in a child process reaches the server without being compiled again.
        state = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in _DATABASES:
            database = state[name]
            state[name] = None if database is None else hyperscan.dumpb(database)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        for name in _DATABASES:
            serialised = state[name]
            if serialised is not None:
                assert isinstance(serialised, bytes)
                state[name] = loaded(serialised)
        self.__dict__.update(state)

    def ends(self, data: bytes) -> list[Report]:
        """(pattern id, end byte offset) of each hit of one text, before any check: at most
        MAX_SPANS_PER_PATTERN per pattern, in the order of their ends."""
        reports = self._capped_ends((self._literals, self._regexes, self._anchored), data)
        if len(reports) > 1:
            reports.sort(key=_BY_END)
        return reports

    def ends_batch(self, data: bytes, starts: Sequence[int], stops: Sequence[int]) -> dict[int, list[Report]]:
        """`ends` of each text of a joined buffer: text i is `data[starts[i]:stops[i]]` (byte
        offsets, ascending; separators between them), its reports with offsets into the text. Texts
        without a report are left out. A report whose last byte is a separator's is no text's."""
        found: dict[int, list[Report]] = {}
        counts: dict[tuple[int, int], int] = {}

        def on_match(pattern_id: int, _from: int, to: int, _flags: int, _context: object) -> None:
            index = bisect_right(starts, to - 1) - 1
            if index < 0 or to > stops[index]:
                return
            key = (pattern_id, index)
            seen = counts.get(key, 0)
            if seen < MAX_SPANS_PER_PATTERN:
                counts[key] = seen + 1
                reports = found.get(index)
                if reports is None:
                    reports = found[index] = []
                reports.append((pattern_id, to - starts[index]))

        for database in (self._literals, self._regexes):
            if database is not None:
                database.scan(data, match_event_handler=on_match)
        if self._anchored is not None:
            for index in self._anchored_texts(data, starts, stops):  # alone: these patterns read its ends
                own = self._own_ends(self._anchored, data[starts[index] : stops[index]])
                if own:
                    found.setdefault(index, []).extend(own)
        for reports in found.values():
            if len(reports) > 1:
                reports.sort(key=_BY_END)
        return found

    def _anchored_texts(self, data: bytes, starts: Sequence[int], stops: Sequence[int]) -> list[int]:
        """The texts an anchored pattern may match in: those its probe reported in."""
        if self._anchored_probe is None:
            return list(range(len(starts)))
        texts: set[int] = set()

        def on_match(_pattern_id: int, _from: int, to: int, _flags: int, _context: object) -> None:
            index = bisect_right(starts, to - 1) - 1
            if index >= 0 and to <= stops[index]:
                texts.add(index)

        self._anchored_probe.scan(data, match_event_handler=on_match)
        return sorted(texts)

    @staticmethod
    def _own_ends(database: hyperscan.Database, data: bytes) -> list[Report]:
        return PatternDatabase._capped_ends((database,), data)

    @staticmethod
    def _capped_ends(databases: Iterable[hyperscan.Database | None], data: bytes) -> list[Report]:
        """(pattern id, end byte offset) of the hits of `databases` in `data`, in report order, at
        most MAX_SPANS_PER_PATTERN per pattern across them all."""
        reports: list[Report] = []
        counts: dict[int, int] = {}

        def on_match(pattern_id: int, _from: int, to: int, _flags: int, _context: object) -> None:
            seen = counts.get(pattern_id, 0)
            if seen < MAX_SPANS_PER_PATTERN:
                counts[pattern_id] = seen + 1
                reports.append((pattern_id, to))

        for database in databases:
            if database is not None:
                database.scan(data, match_event_handler=on_match)
        return reports

    def spans(self, text: str, data: bytes, byte_ends: list[Report]) -> Hits:
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
        single = self.single
        for pattern_id, end in byte_ends:
            if pattern_id in self._locators:
                if pattern_id not in hits:
                    hits[pattern_id] = self._locate(pattern_id, text)
                continue
            stop = end if ascii_only else char_end[end]
            length = self.lengths[pattern_id]
            assert length is not None
            start = stop - length
            if start < 0:  # began in the text before it in a joined buffer (ends_batch)
                continue
            spans = hits.get(pattern_id)
            if spans and single[pattern_id]:
                continue  # a single-match pattern keeps its first hit
            check = edges.get(pattern_id)
            if check is not None and not check.hold(text, start, stop):
                continue
            if spans is None:
                hits[pattern_id] = [(start, stop)]
            else:
                spans.append((start, stop))
        return {pid: spans for pid, spans in hits.items() if spans}

    def _locate(self, pattern_id: int, text: str) -> list[Span]:  # exact spans of a variable pattern
        return locate(self._locators[pattern_id], text, single=self.single[pattern_id])


_DATABASES: Final = ("_literals", "_regexes", "_anchored", "_anchored_probe")


def compiled(patterns: list[tuple[int, bytes]], *, literal: bool) -> hyperscan.Database | None:
    """(id, expression) pairs as one block-mode database (None: no pattern); `literal` compiles
    the expressions as byte strings (the pure-literal compiler), otherwise as UTF-8 regexes."""
    if not patterns:
        return None
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(
            expressions=[expression for _, expression in patterns],
            ids=[pattern_id for pattern_id, _ in patterns],
            elements=len(patterns),
            flags=0 if literal else hyperscan.HS_FLAG_UTF8,
            literal=literal,
        )
    except hyperscan.error as exc:
        raise PatternCompileError(-1, str(exc)) from exc
    return database


def loaded(serialised: bytes) -> hyperscan.Database:
    """A database from `hyperscan.dumpb`, ready to scan (loadb gives none; scanning needs one)."""
    database = hyperscan.loadb(serialised, hyperscan.HS_MODE_BLOCK)
    database.scratch = hyperscan.Scratch(database)
    return database
