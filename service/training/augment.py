"""Training-data augmentation with cloaked copies: each copy of a row has some of its hanzi
written as a homophone, a near-homophone or an emoji, drawn from the *fold halves* of the
substitution tables (service/rules/substitutions.py) — the robustness suite draws from the
held-out halves, so what it measures stays a generalisation. Deterministic: each copy's choices
are seeded by the row's text and the copy's number.
"""

from __future__ import annotations

import functools
import random
import zlib

from service.rules import substitutions


@functools.cache
def _fold_index() -> dict[str, tuple[str, ...]]:
    """Meant character → what it may be written as (fold halves of every table)."""
    index: dict[str, set[str]] = {}
    for split in (substitutions.homophones(), substitutions.near_homophones()):
        for first, second in split.fold:
            if _typed(second):
                index.setdefault(first, set()).add(second)
            if _typed(first):
                index.setdefault(second, set()).add(first)
    for written, meant in substitutions.emoji().fold:
        index.setdefault(meant, set()).add(written)
    return {meant: tuple(sorted(written)) for meant, written in index.items()}


def _typed(char: str) -> bool:
    """GB2312 level 1: the 3,755 common hanzi, the ones people type as substitutes."""
    try:
        return 0xB0 <= char.encode("gb2312")[0] <= 0xD7
    except UnicodeEncodeError:
        return False


def cloaked(text: str, copy: int, share: float) -> str:
    """`text` with about `share` of its substitutable characters substituted."""
    index = _fold_index()
    rng = random.Random(zlib.crc32(f"{copy}\0{text}".encode()))
    out = []
    for char in text:
        options = index.get(char)
        out.append(rng.choice(options) if options and rng.random() < share else char)
    return "".join(out)
