"""Channels: one per (field, text-side layers) of a pack. Each gathers the patterns its rules
scan for and becomes one `FieldMatcher` (one Hyperscan database) over one normalised text."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from service.engine.classifier import Channel
from service.engine.homophones import Homophones
from service.engine.matcher import FieldMatcher
from service.engine.normalize import Normalizer
from service.engine.patterns import PatternSpec, literal_chars
from service.engine.stand_ins import StandIns
from service.rules.expansions import MIN_HOMOPHONE_CHARS, fold_regex, homophone_twin, literal_separators
from service.rules.normalizers import Layers, build_normalizer
from service.rules.tables import (
    COMMON_WORD_MAX_CHARS,
    common_characters,
    common_words,
    emoji_stand_ins,
    homophone_table,
    is_cjk,
    near_homophone_lift,
    pinyin_syllables,
    stand_in_tables,
)


@dataclass
class ChannelBuilder:
    field_name: str
    layers: Layers
    keep: set[str] = field(default_factory=set)  # separators the normaliser keeps (build_normalizer)
    # (expression, whether its twins include near-homophones, whether its hits are all folded) →
    # pattern id: a rule without the layer never shares a pattern, and so its hits, with a rule
    # that has it; an exact keyword never shares one with a variant whose hits are folded readings.
    expressions: dict[tuple[str, bool, bool], int] = field(default_factory=dict)
    lengths: list[int | None] = field(default_factory=list)
    needs_all_spans: set[int] = field(default_factory=set)
    twins: dict[int, dict[str, None]] = field(default_factory=dict)  # homophone twins per pattern id
    spelled: set[int] = field(default_factory=set)  # pinyin spellings (ends checked as syllables)

    def add(
        self,
        expression: str,
        fixed_length: int | None,
        *,
        all_spans: bool,
        twins: bool = True,
        more_twins: Sequence[str] = (),
        spelled: bool = False,
        near: bool = False,
        folded: bool = False,
    ) -> int:
        """The id of `expression`. In a channel with homophones, a pattern of hanzi (a keyword of
        at least MIN_HOMOPHONE_CHARS, or a regex) gets its homophone fold and `more_twins` as
        twins, unless `twins` is False (variants that are not hanzi words: pinyin, emoji). With
        `near` (the rule's near_homophones layer), the twins are near-homophone folds
        (`more_twins` too) written over the homophone view (`near_twins`)."""
        wide_enough = fixed_length is None or fixed_length >= MIN_HOMOPHONE_CHARS
        twinned = twins and self.layers.homophones and wide_enough
        key = (expression, near and twinned, folded)
        pattern_id = self.expressions.get(key)
        if pattern_id is None:
            pattern_id = len(self.lengths)
            self.expressions[key] = pattern_id
            self.lengths.append(fixed_length)
            self.keep |= literal_separators(expression, regex=fixed_length is None)
            if spelled:
                self.spelled.add(pattern_id)
        if all_spans:
            self.needs_all_spans.add(pattern_id)
        if twinned:
            found = [homophone_twin(expression, regex=fixed_length is None, near=near), *more_twins]
            if near:
                found = [lifted for twin in found if twin is not None
                         for lifted in near_twins(twin, literal=fixed_length is not None)]
            self.twins.setdefault(pattern_id, {}).update(dict.fromkeys(t for t in found if t is not None))
        return pattern_id

    @property
    def normalizer(self) -> Normalizer:
        keep = frozenset(self.keep)
        if self.layers.homophones and self.layers.stand_ins:  # stand-in emoji stay for their views
            keep |= frozenset(emoji_stand_ins())
        return build_normalizer(self.layers, keep)

    def patterns(self) -> tuple[PatternSpec, ...]:
        return tuple(
            PatternSpec(
                expression, self.lengths[i], i not in self.needs_all_spans, tuple(self.twins.get(i, ())), folded
            )
            for (expression, _, folded), i in self.expressions.items()
        )

    def matcher(self) -> FieldMatcher:
        normalizer = self.normalizer
        homophones = None
        stand_ins = None
        if any(self.twins.values()):
            homophones = Homophones(homophone_table(), common_words(), COMMON_WORD_MAX_CHARS, common_characters())
            if self.layers.stand_ins:
                readings = emoji_stand_ins()
                stand_ins = StandIns(stand_in_tables(), frozenset(readings), readings, self._keyword_pairs())
        return FieldMatcher(
            self.patterns(),
            alternate=normalizer.without_kept if normalizer.kept else None,
            alternate_probe=normalizer.kept_probe,
            homophones=homophones,
            syllables=pinyin_syllables() if self.spelled else frozenset(),
            spelled=frozenset(self.spelled),
            stand_ins=stand_ins,
        )

    def _keyword_pairs(self) -> frozenset[str]:
        """Two adjacent hanzi of a literal twin (a keyword over the homophone view): what an emoji
        read in context must make with a neighbour (StandIns.fitted)."""
        pairs: set[str] = set()
        for twins in self.twins.values():
            for twin in twins:
                chars = literal_chars(twin)
                if chars is not None:
                    text = chars[0]
                    pairs.update(a + b for a, b in itertools.pairwise(text) if is_cjk(a) and is_cjk(b))
        return frozenset(pairs)

    def channel(self) -> Channel:
        """Compiles the database: raises `PatternCompileError` when Hyperscan refuses it."""
        return Channel(self.field_name, self.normalizer, self.matcher())


class Channels:
    """The pack's channel builders, numbered in the order rules first asked for them."""

    def __init__(self) -> None:
        self._builders: dict[tuple[str, Layers], ChannelBuilder] = {}

    def get(self, field_name: str, layers: Layers) -> tuple[int, ChannelBuilder]:
        layers = layers.text_side()  # keyword-side layers share the channel (see Layers)
        key = (field_name, layers)
        builder = self._builders.get(key)
        if builder is None:
            builder = ChannelBuilder(field_name, layers)
            self._builders[key] = builder
        return list(self._builders).index(key), builder

    def builders(self) -> tuple[ChannelBuilder, ...]:
        return tuple(self._builders.values())


# A near-homophone twin of a keyword becomes at most this many literal twins over the homophone
# view (脑残 → 脑残, 老残 as their representatives); one with more alternatives becomes one
# pattern with classes, located by RE2 when Hyperscan reports it. Measured on the sample mix
# (loadtest.engine_batch_bench): classes for every lifted twin cost ~3.5 µs per event, a cap of
# 16 literals ~1.5 µs, 64 (22 keywords past it) ~0.9 µs, against no near-homophones at all.
MAX_NEAR_LITERALS: Final = 64


def near_twins(twin: str, *, literal: bool) -> list[str]:
    """A twin over the near-homophone view, written over the homophone view: each representative
    that stands for several homophone groups (tables.near_homophone_lift) becomes all of them."""
    lift = near_homophone_lift()
    if literal:
        options = [lift.get(char, char) for char in twin]
        if math.prod(map(len, options)) <= MAX_NEAR_LITERALS:
            return ["".join(chars) for chars in itertools.product(*options)]
    return [fold_regex(twin, lambda char: lift.get(char, char))]


_ASCII_WORD: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def literal_expression(term: str) -> str:
    """A literal as a pattern both Hyperscan and RE2 read the same way; Latin ends get \\b."""
    escaped = "".join(
        ch if ch.isalnum() or ord(ch) > 0x7F else f"\\x{ord(ch):02x}" for ch in term
    )
    prefix = r"\b" if term[0] in _ASCII_WORD else ""
    suffix = r"\b" if term[-1] in _ASCII_WORD else ""
    return f"{prefix}{escaped}{suffix}"
