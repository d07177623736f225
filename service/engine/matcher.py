"""One compiled multi-pattern database per scanned field; `scan` returns spans per pattern id.

Hyperscan scans the UTF-8 bytes of the normalised text once for all patterns of a field
(~2 µs for 10k keywords). Start offsets are not asked of Hyperscan (its start-of-match mode makes
databases ~5x larger and is no faster): a fixed-length pattern starts at end − length, a
variable-length one is located by RE2 (linear time) only when Hyperscan reported a hit.

Patterns flagged `single_match` report once per scan, which bounds callback work on hostile
input; the others (used by proximity conditions) keep up to `MAX_SPANS_PER_PATTERN` spans.
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


@dataclass
class FieldMatcher:
    """Scans one field's normalised text for every pattern compiled into its database."""

    patterns: tuple[PatternSpec, ...]
    _database: hyperscan.Database = field(init=False, repr=False)
    _locators: dict[int, re2._Regexp] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        flags = []
        for pattern in self.patterns:
            flag = hyperscan.HS_FLAG_UTF8
            if pattern.single_match:
                flag |= hyperscan.HS_FLAG_SINGLEMATCH
            flags.append(flag)
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            database.compile(
                expressions=[p.expression.encode() for p in self.patterns],
                ids=list(range(len(self.patterns))),
                elements=len(self.patterns),
                flags=flags,
            )
        except hyperscan.error as exc:
            raise PatternCompileError(-1, str(exc)) from exc
        self._database = database
        self._locators = {
            index: re2.compile(p.expression, _RE2_OPTIONS)
            for index, p in enumerate(self.patterns)
            if p.fixed_length is None
        }

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
        for pattern_id, end in byte_ends:
            pattern = self.patterns[pattern_id]
            if pattern.fixed_length is None:
                if pattern_id not in hits:
                    hits[pattern_id] = self._locate(pattern_id, text)
                continue
            stop = end if ascii_only else char_end[end]
            hits.setdefault(pattern_id, []).append((stop - pattern.fixed_length, stop))
        return {pid: spans for pid, spans in hits.items() if spans}

    def _locate(self, pattern_id: int, text: str) -> list[Span]:
        spans: list[Span] = []
        for match in self._locators[pattern_id].finditer(text):
            spans.append(match.span())
            if len(spans) >= MAX_SPANS_PER_PATTERN or self.patterns[pattern_id].single_match:
                break
        return spans
