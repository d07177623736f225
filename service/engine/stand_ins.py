"""Emoji stand-ins: emoji read as the hanzi their name says (🐴 马 → ma, so 你🐴 reads 你妈).

With homophones on, the matcher scans, for text that holds such an emoji, one more view per
position of the emoji's name (`tables`: the homophone fold, and each emoji replaced by the fold
of its k-th name character): several emoji in one keyword (🐮🍺 for 牛逼… in one view) and
emoji mixed with homophones are read at once. Every hit found this way is a folded reading.

One more view reads each emoji *in context* (`fitted`): as the character of its name that makes,
with the character before or after it, two characters of one of the channel's keywords (their
folds) — so emoji that stand for characters at different places of their names (🕺📂 for 男的:
男 is 跳舞的男人's 4th, 的 打开的文件夹's 3rd) are read together, and a 7th character too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from service.engine.normalize import TranslateTable

# Passes of the in-context reading: the second decides each emoji again with its neighbours'
# readings of the first (two emoji side by side).
_FITTED_PASSES: Final = 2
# Emoji of one text read in context, at most (the others keep their first view's reading).
MAX_FITTED: Final = 64


@dataclass(frozen=True)
class StandIns:
    tables: tuple[TranslateTable, ...]
    chars: frozenset[str]  # the emoji the tables read
    # Emoji → the folds of its name's characters, in order; and the adjacent pairs of characters
    # of the channel's keywords, folded (the in-context reading's dictionary). Empty: no such view.
    readings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pairs: frozenset[str] = frozenset()
    probe: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A class of ~1,400 single characters costs `re` ~13 µs per search; the emoji blocks as
        # two ranges and the few characters outside them cost ~0.2 µs (positions then check).
        outside = "".join(re.escape(c) for c in sorted(self.chars) if not any(lo <= ord(c) <= hi for lo, hi in _BLOCKS))
        ranges = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _BLOCKS)
        object.__setattr__(self, "probe", re.compile(f"[{outside}{ranges}]" if self.chars else "(?!)"))

    def positions(self, text: str) -> list[int]:
        """Where `text` holds a stand-in emoji (empty when none)."""
        if self.probe.search(text) is None:
            return []
        chars = self.chars
        return [match.start() for match in self.probe.finditer(text) if match.group() in chars]

    def fitted(self, text: str, positions: list[int]) -> str | None:
        """The first view (`tables[0]`) with each emoji at `positions` (the first MAX_FITTED of
        them: a text dense with emoji costs no more than a short one) read as the first character
        of its name that makes a keyword's pair with the character before or after it, as they
        read in this view, left to right, twice; None when no emoji makes one."""
        if not self.pairs:
            return None
        base = text.translate(self.tables[0])
        chosen: dict[int, str] = {}
        considered = positions[:MAX_FITTED]
        for _ in range(_FITTED_PASSES):
            for position in considered:
                before = chosen.get(position - 1, base[position - 1]) if position else ""
                after = chosen.get(position + 1, base[position + 1 : position + 2])
                for reading in self.readings.get(text[position], ()):
                    if before + reading in self.pairs or reading + after in self.pairs:
                        chosen[position] = reading
                        break
        if not chosen:
            return None
        pieces: list[str] = []
        last = 0
        for position in sorted(chosen):
            pieces.append(base[last:position])
            pieces.append(chosen[position])
            last = position + 1
        pieces.append(base[last:])
        return "".join(pieces)


# Blocks of symbols and emoji (arrows … dingbats, the emoji planes): no hanzi, letter or punctuation.
_BLOCKS = ((0x2190, 0x2BFF), (0x1F000, 0x1FAFF))
