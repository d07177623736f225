"""A pinyin spelling's ends read at most SYLLABLE_WINDOW letters of the run around it."""

from __future__ import annotations

import pytest

from service.engine.patterns import SYLLABLE_WINDOW, SyllableEdges
from service.rules import tables

EDGES = SyllableEdges(tables.pinyin_syllables(), max(map(len, tables.pinyin_syllables())))
LONG = SYLLABLE_WINDOW * 4

CASES = [
    # (text, spelling, holds)
    ("shabi" + "de" * LONG, "shabi", True),  # the rest reads as syllables far past the window
    ("de" * LONG + "shabi", "shabi", True),  # likewise before it
    ("shabi" + "de" * 5 + "z" + "de" * LONG, "shabi", False),  # a non-syllable inside the window
    ("de" * LONG + "z" + "de" * 5 + "shabi", "shabi", False),  # likewise before it
    # Past the window nothing more is read: a long typed-pinyin sentence may end anyhow.
    ("shabi" + "de" * SYLLABLE_WINDOW + "z", "shabi", True),
    # The window may cut a syllable in two (zhuang is 6 letters): the split up to there counts.
    ("shabi" + "zhuang" * LONG, "shabi", True),
    ("de" * LONG + "shabi" + "de", "shabi", False),  # mid-run
]


@pytest.mark.parametrize(("text", "spelling", "holds"), CASES)
def test_spelling_ends(text: str, spelling: str, holds: bool) -> None:
    start = text.index(spelling)  # each text holds the spelling once
    assert EDGES.hold(text, start, start + len(spelling)) is holds
