"""Text normalisation that keeps a map back to the original offsets.

Two passes, both C-backed:
1. `str.translate` with a dense list (one entry per code point, built at pack load): width and
   compatibility folding, case folding, traditional → simplified, invisible characters → NUL.
   Every entry maps one character to exactly one character, so offsets survive unchanged.
2. One compiled regex finds what to *remove*: the NULs, separators wedged between CJK characters
   (红 包, 红*包) and between spelled-out single Latin letters (p o r n, f.u.c.k). Latin words that
   were really separate ("red packet") keep their space. Removal builds a segment map so a span
   of the compact text maps back to the original text with one bisect.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

# Placeholder the translate table assigns to characters that must disappear (zero-width, BOM…).
DELETED: Final = "\x00"

TranslateTable = list[int | None]


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """The compact normalised text and the map from its offsets to the original's."""

    text: str
    # Parallel arrays: compact segment start → original start. Empty when nothing was removed.
    compact_starts: tuple[int, ...] = ()
    original_starts: tuple[int, ...] = ()

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map the compact half-open span [start, end) to the original text."""
        if not self.compact_starts:
            return start, end
        if end <= start:
            position = self._original_index(start)
            return position, position
        return self._original_index(start), self._original_index(end - 1) + 1

    def _original_index(self, index: int) -> int:
        segment = bisect_right(self.compact_starts, index) - 1
        return self.original_starts[segment] + index - self.compact_starts[segment]


@dataclass(frozen=True)
class Normalizer:
    """A compiled normalisation profile; `normalize` is the only per-event call."""

    table: TranslateTable
    removable: re.Pattern[str] | None

    def normalize(self, text: str) -> NormalizedText:
        folded = text.translate(self.table)
        if self.removable is None:
            return NormalizedText(folded)
        removable = self.removable
        if removable.search(folded) is None:
            return NormalizedText(folded)
        pieces: list[str] = []
        compact_starts: list[int] = []
        original_starts: list[int] = []
        position = 0
        compact_length = 0
        for match in removable.finditer(folded):
            start, end = match.span()
            if start > position:
                compact_starts.append(compact_length)
                original_starts.append(position)
                pieces.append(folded[position:start])
                compact_length += start - position
            position = end
        if position < len(folded):
            compact_starts.append(compact_length)
            original_starts.append(position)
            pieces.append(folded[position:])
        if not compact_starts:  # everything was removable
            return NormalizedText("", (0,), (len(folded),))
        return NormalizedText("".join(pieces), tuple(compact_starts), tuple(original_starts))


def build_removable_pattern(
    *, invisible: bool, separators: bool, cjk_separator_chars: str, latin_separator_chars: str
) -> re.Pattern[str] | None:
    """The removal regex for a profile; None when the profile removes nothing."""
    alternatives: list[str] = []
    if invisible:
        alternatives.append(f"{DELETED}+")
    if separators:
        cjk = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
        cjk_sep = _char_class(cjk_separator_chars + (DELETED if invisible else ""))
        latin_sep = _char_class(latin_separator_chars + (DELETED if invisible else ""))
        alternatives.append(f"(?<=[{cjk}]){cjk_sep}+(?=[{cjk}])")
        # A separator between two single letters/digits that stand alone: "p o r n", "f.u.c.k".
        alternatives.append(f"(?<=(?<![a-z0-9])[a-z0-9]){latin_sep}+(?=[a-z0-9](?![a-z0-9]))")
    if not alternatives:
        return None
    return re.compile("|".join(alternatives))


def _char_class(chars: str) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(set(chars))) + "]"
