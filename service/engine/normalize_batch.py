"""Many texts normalised together: one fold, one skeleton and one removal pass for the batch.

`normalize_batch` gives each text exactly what `Normalizer.normalize` gives it alone. The texts are
joined with SEPARATOR; the fold and the skeleton are NumPy lookups over the joined code points
(service.engine.code_tables), and the separator's skeleton letter is set to `O` (other), which
every branch of the removal rule treats as it treats a text's start or end: no branch consumes an
`O`, and each lookbehind and lookahead that reads one fails as it fails at the ends. So no removal
crosses a separator and each text's removals are its own.

The removal rule is not run over the whole joined skeleton (~2 µs per chat message: `re` tries its
four branches at every position) but only at the positions where one of them can start (a
separator or deleted character after a hanzi, letter or punctuation; a deleted character; a
letter that begins a spelled-out run), found with NumPy; `Pattern.match` at such a position reads
the lookbehinds before it, so the matches are those `finditer` finds.

The compact texts stay joined (`compact`, separators kept) for the matcher's one scan per batch;
`normalized(i)` builds text i's `NormalizedText`, with its map back to the original, only for the
texts the matcher found something in.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from service.engine.code_tables import Codes, codes_of, text_of
from service.engine.normalize import (
    INNER_SEPARATORS,
    REMOVABLE,
    NormalizedText,
    Normalizer,
    compact_text,
    word_breaks_kept,
)

SEPARATOR: Final = "\n"
_OTHER: Final = ord("O")
_C, _E, _L, _P, _S, _D = (ord(letter) for letter in "CELPSD")


@dataclass(slots=True)
class NormalizedBatch:
    """Texts normalised together; text i's compact form is `compact[starts[i]:stops[i]]`."""

    compact: str  # the compact texts joined by SEPARATOR
    compact_codes: Codes  # the code points of `compact`
    starts: list[int]
    stops: list[int]
    _folded: str  # the folded texts joined by SEPARATOR (each as long as its original)
    _origins: list[int]  # where each text starts in `_folded`
    _ends: list[int]  # and where it ends
    _removals: list[tuple[int, int]]  # spans of `_folded` removed, ascending
    _removal_starts: list[int]

    def __len__(self) -> int:
        return len(self.starts)

    def normalized(self, index: int) -> NormalizedText:
        """Text `index` as `Normalizer.normalize` gives it."""
        origin, end = self._origins[index], self._ends[index]
        folded = self._folded[origin:end]
        first = bisect_left(self._removal_starts, origin)
        last = bisect_left(self._removal_starts, end, first)
        if first == last:
            return NormalizedText(folded)
        return compact_text(folded, [(start - origin, stop - origin) for start, stop in self._removals[first:last]])


def normalize_batch(normalizer: Normalizer, texts: Sequence[str]) -> NormalizedBatch:
    lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
    origins = np.zeros(len(texts), dtype=np.int64)
    if len(texts) > 1:
        origins[1:] = np.cumsum(lengths[:-1] + 1)
    folded_codes = normalizer.codes.apply(codes_of(SEPARATOR.join(texts)))
    separators = origins[1:] - 1
    folded_codes[separators] = ord(SEPARATOR)
    folded = text_of(folded_codes)
    removals: list[tuple[int, int]] = []
    if normalizer.classes is not None and len(folded_codes):
        skeleton = normalizer.classes.apply(folded_codes)
        skeleton[separators] = _OTHER
        removals = _removals(folded, skeleton)
    origin_list = origins.tolist()
    end_list = (origins + lengths).tolist()
    if not removals:
        return NormalizedBatch(folded, folded_codes, origin_list, end_list, folded, origin_list, end_list, [], [])
    keep = np.ones(len(folded_codes), dtype=bool)
    for start, stop in removals:
        keep[start:stop] = False
    compact_codes = folded_codes[keep]
    kept_before = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    return NormalizedBatch(
        text_of(compact_codes), compact_codes, kept_before[origins].tolist(), kept_before[origins + lengths].tolist(),
        folded, origin_list, end_list, removals, [start for start, _ in removals],
    )


def _removals(folded: str, skeleton: npt.NDArray[np.uint8]) -> list[tuple[int, int]]:
    """What `normalize.py`'s removal rule removes from the joined texts (module docstring)."""
    before = np.empty_like(skeleton)
    before[0] = _OTHER
    before[1:] = skeleton[:-1]
    after = np.empty_like(skeleton)
    after[-1] = _OTHER
    after[:-1] = skeleton[1:]
    gap = (skeleton == _S) | (skeleton == _D)
    # c, lc: a gap after a hanzi, kept character, letter or punctuation; d: a deleted character.
    starts = gap & ((before == _C) | (before == _E) | (before == _L) | (before == _P))
    starts |= skeleton == _D
    # l: a letter not after a letter, followed by a gap, punctuation or a kept character.
    starts |= (skeleton == _L) & (before != _L) & (
        (after == _S) | (after == _D) | (after == _P) | (after == _E)
    )
    candidates = np.flatnonzero(starts)
    if not len(candidates):
        return []
    letters = skeleton.tobytes().decode("ascii")
    spans: list[tuple[int, int]] = []
    position = 0
    match = REMOVABLE.match
    for candidate in candidates.tolist():
        if candidate < position:
            continue
        found = match(letters, candidate)
        if found is None:
            continue
        group = found.lastgroup
        assert group is not None
        if group == "l":
            offset = found.start("l")
            gaps = [(offset + inner.start(), offset + inner.end()) for inner in INNER_SEPARATORS.finditer(found[group])]
            spans.extend(word_breaks_kept(folded, gaps))
        else:
            spans.append(found.span(group))
        position = found.end()
    return spans
