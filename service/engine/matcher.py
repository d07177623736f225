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
"""

from __future__ import annotations

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


@dataclass
class FieldMatcher:
    """Scans one field's normalised text for every pattern compiled into its database."""

    patterns: tuple[PatternSpec, ...]
    _database: hyperscan.Database = field(init=False, repr=False)
    _locators: dict[int, re2._Regexp] = field(init=False, repr=False)
    _edges: dict[int, _Edges] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        flags = []
        expressions: list[bytes] = []
        self._locators = {}
        self._edges = {}
        for index, pattern in enumerate(self.patterns):
            stripped, removed = strip_boundaries(pattern.expression)
            flag = hyperscan.HS_FLAG_UTF8
            # A boundary can reject the first occurrence and accept a later one: keep them all.
            if pattern.single_match and not removed:
                flag |= hyperscan.HS_FLAG_SINGLEMATCH
            flags.append(flag)
            expressions.append(stripped.encode())
            edges = _literal_edges(pattern.expression, removed)
            if pattern.fixed_length is None or (removed and edges is None):
                self._locators[index] = re2.compile(pattern.expression, _RE2_OPTIONS)
            elif edges is not None:
                self._edges[index] = edges
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            database.compile(
                expressions=expressions,
                ids=list(range(len(self.patterns))),
                elements=len(self.patterns),
                flags=flags,
            )
        except hyperscan.error as exc:
            raise PatternCompileError(-1, str(exc)) from exc
        self._database = database

    def scan(self, text: str) -> Hits:
        if not text:
            return {}
        data = text.encode("utf-8", "replace")
        byte_ends: list[tuple[int, int]] = []  # (pattern id, end byte offset)
        counts: dict[int, int] = {}

        def on_match(pattern_id: int, _from: int, to: int, _flags: int, _context: object) -> None:
            seen = counts.get(pattern_id, 0)
            if seen < MAX_SPANS_PER_PATTERN:
                counts[pattern_id] = seen + 1
                byte_ends.append((pattern_id, to))

        self._database.scan(data, match_event_handler=on_match)
        if not byte_ends:
            return {}
        return self._spans(text, data, byte_ends)

    def _spans(self, text: str, data: bytes, byte_ends: list[tuple[int, int]]) -> Hits:
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
            length = self.patterns[pattern_id].fixed_length
            assert length is not None
            start = stop - length
            check = edges.get(pattern_id)
            if check is not None and not check.hold(text, start, stop):
                continue
            spans = hits.setdefault(pattern_id, [])
            if not (check is not None and self.patterns[pattern_id].single_match and spans):
                spans.append((start, stop))
        return {pid: spans for pid, spans in hits.items() if spans}

    def _locate(self, pattern_id: int, text: str) -> list[Span]:  # exact spans of a variable pattern
        spans: list[Span] = []
        for match in self._locators[pattern_id].finditer(text):
            spans.append(match.span())
            if len(spans) >= MAX_SPANS_PER_PATTERN or self.patterns[pattern_id].single_match:
                break
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
