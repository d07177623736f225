"""Emoji stand-ins: emoji read as the hanzi their name says (🐴 马 → ma, so 你🐴 reads 你妈).

With homophones on, the matcher scans, for text that holds such an emoji, one more view per
position of the emoji's name (`tables`: the homophone fold, and each emoji replaced by the fold
of its k-th name character): several emoji in one keyword (🐮🍺 for 牛逼… in one view) and
emoji mixed with homophones are read at once. Every hit found this way is a folded reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from service.engine.normalize import TranslateTable


@dataclass(frozen=True)
class StandIns:
    tables: tuple[TranslateTable, ...]
    chars: frozenset[str]  # the emoji the tables read
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


# Blocks of symbols and emoji (arrows … dingbats, the emoji planes): no hanzi, letter or punctuation.
_BLOCKS = ((0x2190, 0x2BFF), (0x1F000, 0x1FAFF))
