"""Normalisation layers of a pack or rule, and the text-side normaliser each distinct setting
gets (docs/rules.md, "Evasion layers")."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Final

from service.engine.normalize import SKELETON_KEPT, Normalizer
from service.rules import schema as s
from service.rules.tables import TABLE_SIZE, skeleton_table, translate_table


@dataclass(frozen=True)
class Layers:
    """Normalisation layers (docs/rules.md, "Evasion layers"). width … traditional fold the text
    1:1 (one normaliser per distinct setting); leet, pinyin, initials, split_characters and emoji
    widen keywords into variants at load (service.rules.expansions), so rules that differ only in
    those share one normalised text and one database. homophones gives a channel's patterns twins
    that the matcher scans over a homophone-folded view of the same text (rules that differ in it
    get their own channel)."""

    width: bool = True
    case: bool = True
    invisible: bool = True
    separators: bool = True
    traditional: bool = True
    leet: bool = True
    pinyin: bool = True
    initials: bool = False  # opt-in per pack or rule: 3+ letters of pinyin initials (nmsl for 你妈死了)
    split_characters: bool = False  # opt-in per pack or rule: a hanzi written as its parts (女表 for 婊)
    emoji: bool = True
    homophones: bool = False  # opt-in per pack or rule; the default pack turns it on (docs/quality.md)
    near_homophones: bool = False  # with homophones: fuzzy-pinyin pairs read alike too (opt-in)
    stand_ins: bool = False  # with homophones: emoji read as the characters of their name (opt-in)

    def overridden(self, spec: s.NormalizeSpec | None) -> Layers:
        if spec is None:
            return self
        changes = {
            name: value for name in _LAYER_NAMES if (value := getattr(spec, name)) is not None
        }
        return dataclasses.replace(self, **changes) if changes else self

    def text_side(self) -> Layers:
        """The switches that decide a channel: what changes the normalised text, and homophones.
        near_homophones does not: a rule's near-homophone twins are written over the channel's
        homophone view (ChannelBuilder.add), so rules with and without it share one scan."""
        return dataclasses.replace(
            self, leet=False, pinyin=False, initials=False, split_characters=False, emoji=False, near_homophones=False
        )


_LAYER_NAMES: Final = tuple(f.name for f in dataclasses.fields(Layers))


@functools.lru_cache(maxsize=64)
def build_normalizer(layers: Layers, keep: frozenset[str] = frozenset()) -> Normalizer:
    """The text-side normaliser; `keep` are separators that patterns contain (stand-in emoji,
    symbols of regexes), so they are never removed (发🧧给我 keeps its 🧧) and gaps around them
    close as between hanzi; the matcher's alternate view removes them (Normalizer.without_kept)."""
    table = translate_table(
        width=layers.width,
        case=layers.case,
        traditional=layers.traditional,
        invisible=layers.invisible,
    )
    skeleton = skeleton_table(invisible=layers.invisible, separators=layers.separators)
    kept = frozenset(c for c in keep if ord(c) < TABLE_SIZE) if layers.separators else frozenset()
    if kept and skeleton is not None:
        skeleton = list(skeleton)
        for char in kept:
            skeleton[ord(char)] = SKELETON_KEPT
    return Normalizer(table, skeleton, kept)
