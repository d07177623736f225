"""One Hyperscan database over some of a field's patterns, with what locates and checks its hits.

The matcher (matcher.py) owns one per field and scans it over each view of the text; `ends` is
the scan itself (pattern id, end byte offset), `spans` turns those ends into checked character
spans on the text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    literal_edges,
    locate,
    strip_boundaries,
)


@dataclass
class PatternDatabase:
    """One Hyperscan database over some of a field's patterns (ids are the field's pattern ids),
    with what locates and checks their hits. The `deferred` ids are only compiled: their hits are
    the caller's to read (FieldMatcher's homophonic patterns)."""

    lengths: dict[int, int | None]
    single: dict[int, bool]
    expressions: list[tuple[int, str]]
    syllables: SyllableEdges | None = None
    spelled: frozenset[int] = frozenset()  # ids whose ends are checked as pinyin syllables
    deferred: frozenset[int] = frozenset()
    _database: hyperscan.Database = field(init=False, repr=False)
    _locators: dict[int, re2._Regexp] = field(init=False, repr=False)
    _edges: dict[int, Edges | SyllableEdges] = field(init=False, repr=False)

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
            edges = literal_edges(expression, removed)
            if self.lengths[pattern_id] is None or (removed and edges is None):
                self._locators[pattern_id] = re2.compile(expression, RE2_OPTIONS)
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

    def __getstate__(self) -> dict[str, object]:
        # Hyperscan databases do not pickle: they travel serialised (hyperscan.dumpb), so a pack
        # compiled in a child process reaches the server without being compiled again.
        state = {name: getattr(self, name) for name in self.__dataclass_fields__}
        state["_database"] = hyperscan.dumpb(self._database)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        serialised = state.pop("_database")
        assert isinstance(serialised, bytes)
        database = hyperscan.loadb(serialised, hyperscan.HS_MODE_BLOCK)
        database.scratch = hyperscan.Scratch(database)  # loadb gives none; scanning needs one
        self.__dict__.update(state)
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
        return locate(self._locators[pattern_id], text, single=self.single[pattern_id])
