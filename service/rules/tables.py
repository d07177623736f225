"""Normalisation tables derived at pack load from maintained sources, never hand-typed.

- width/compatibility folding: Unicode NFKC per character (kept only when it yields one character);
- case folding: `str.lower` per character (kept only when one character);
- traditional → simplified: OpenCC's `t2s` character conversion;
- invisible characters: Unicode categories Cf/Cc, variation selectors and combining marks that
  evaders stack on Latin letters (U+0300–U+036F, U+20D0–U+20FF) map to the DELETED placeholder;
  lone surrogates map to U+FFFD so the UTF-8 the scanner sees is always valid.

Tables are pure functions of the layer switches, so they are cached per process.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Final

import opencc

from service.engine.normalize import (
    DELETED,
    SKELETON_CJK,
    SKELETON_DELETED,
    SKELETON_LATIN,
    SKELETON_OTHER,
    SKELETON_PUNCTUATION,
    SKELETON_SEPARATOR,
    TranslateTable,
)

# Dense up to the end of plane 2 (CJK Extension B…): list lookups are ~2x faster than a dict.
TABLE_SIZE: Final = 0x30000
_CJK_RANGES: Final = ((0x3400, 0x4DC0), (0x4E00, 0xA000), (0xF900, 0xFB00), (0x20000, 0x2EBF0))
# Sentence punctuation is never a separator between CJK characters: "红，包括" must not read 红包.
_SENTENCE_PUNCTUATION: Final = ",.!?;:，。！？；：、\u3000"
_SEPARATOR_CATEGORIES: Final = frozenset({"Zs", "Pc", "Pd", "Po", "Ps", "Pe", "Pi", "Pf", "Sm", "Sk", "So", "Sc"})


def _is_invisible(code_point: int) -> bool:
    if 0xFE00 <= code_point <= 0xFE0F or 0xE0100 <= code_point <= 0xE01EF:
        return True  # variation selectors
    if 0x0300 <= code_point <= 0x036F or 0x20D0 <= code_point <= 0x20FF:
        return True  # combining marks stacked on Latin letters (p̶o̶r̶n̶)
    category = unicodedata.category(chr(code_point))
    return category in ("Cf", "Cc") and chr(code_point) not in "\t\n\r"


@functools.lru_cache(maxsize=16)
def translate_table(*, width: bool, case: bool, traditional: bool, invisible: bool) -> TranslateTable:
    table: list[int | None] = list(range(TABLE_SIZE))
    converter = opencc.OpenCC("t2s.json") if traditional else None
    for code_point in range(TABLE_SIZE):
        if 0xD800 <= code_point <= 0xDFFF:
            table[code_point] = 0xFFFD
            continue
        char = chr(code_point)
        if invisible and _is_invisible(code_point):
            table[code_point] = ord(DELETED)
            continue
        if width:
            folded = unicodedata.normalize("NFKC", char)
            if len(folded) == 1:
                char = folded
        if case:
            lowered = char.lower()
            if len(lowered) == 1:
                char = lowered
        if code_point != ord(char):
            table[code_point] = ord(char)
    if converter is not None:
        for start, stop in _CJK_RANGES:
            for code_point in range(start, stop):
                simplified = converter.convert(chr(code_point))
                if len(simplified) == 1 and simplified != chr(code_point):
                    table[code_point] = ord(simplified)
    return table


def _is_separator(char: str) -> bool:
    """Whitespace, punctuation and symbols (emoji included: 红🌹包 is an evasion)."""
    return char in " \t\n\r" or unicodedata.category(char) in _SEPARATOR_CATEGORIES


@functools.lru_cache(maxsize=4)
def skeleton_table(*, invisible: bool, separators: bool) -> list[str] | None:
    """Class letter per folded character (see engine.normalize); None when nothing is removed."""
    if not (invisible or separators):
        return None
    table = [SKELETON_OTHER] * TABLE_SIZE
    if separators:
        for code_point in range(TABLE_SIZE):
            if 0xD800 <= code_point <= 0xDFFF:
                continue
            char = chr(code_point)
            if char in _SENTENCE_PUNCTUATION:
                table[code_point] = SKELETON_PUNCTUATION
            elif _is_separator(char):
                table[code_point] = SKELETON_SEPARATOR
        for start, stop in _CJK_RANGES:
            table[start:stop] = [SKELETON_CJK] * (stop - start)
        for char in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
            table[ord(char)] = SKELETON_LATIN
    if invisible:
        table[ord(DELETED)] = SKELETON_DELETED
    return table
