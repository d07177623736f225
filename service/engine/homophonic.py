"""How a homophonic pattern's hits on the homophone view are read on the text itself.

The matcher (matcher.py) compiles a pattern that mentions a character with homophones over the
homophone view; Hyperscan then only says that the pattern, or one of its twins, occurs in the
view. `Homophonic` reads the occurrences: the pattern's own characters in the text (`exact`),
and the places where a twin stands in the view but not the pattern itself (`homophones`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import re2

from service.engine.patterns import (
    MAX_SPANS_PER_PATTERN,
    RE2_OPTIONS,
    Edges,
    PatternSpec,
    Span,
    SyllableEdges,
    literal_chars,
    locate,
)


@dataclass(frozen=True, slots=True)
class Homophonic:
    """A pattern whose hits on the homophone view are read on the text: a literal's occurrences
    are found with str.find (in the text: the pattern itself; in the view: its twins), any other
    pattern is located by RE2 (over the text: itself; over the view: its twins)."""

    pattern_id: int
    single: bool
    length: int
    literal: str | None  # the characters a literal pattern matches; None: located by RE2
    edges: Edges | SyllableEdges | None  # a literal's ends
    locator: re2._Regexp | None  # the pattern over the text, when not a literal
    twin_literals: tuple[tuple[str, Edges | None], ...]  # a literal's twins as characters
    twin_locators: tuple[re2._Regexp, ...]  # the twins over the view, when not a literal
    twinned: bool = field(init=False)
    plain_single: bool = field(init=False)  # a single-match literal without edges: one str.find

    def __post_init__(self) -> None:
        object.__setattr__(self, "twinned", bool(self.twin_literals or self.twin_locators))
        object.__setattr__(self, "plain_single", self.single and self.literal is not None and self.edges is None)

    def exact(self, text: str) -> list[Span]:
        """The pattern's own hits in the text."""
        literal = self.literal
        if literal is None:
            assert self.locator is not None
            return locate(self.locator, text, single=self.single)
        spans: list[Span] = []
        start = text.find(literal)
        seen = 0
        while start >= 0 and seen < MAX_SPANS_PER_PATTERN:
            seen += 1
            stop = start + self.length
            if self.edges is None or self.edges.hold(text, start, stop):
                spans.append((start, stop))
                if self.single:
                    break
            start = text.find(literal, start + 1)
        return spans

    def homophones(self, text: str, view: str) -> list[Span]:
        """The twins' hits in `view` (the folded `text`) that are not the pattern's own characters."""
        literal = self.literal
        if literal is None:
            spans: list[Span] = []
            for locator in self.twin_locators:
                spans.extend(locate(locator, view, single=False))
            return spans
        found: list[Span] = []
        for twin, edges in self.twin_literals:
            start = view.find(twin)
            seen = 0
            while start >= 0 and seen < MAX_SPANS_PER_PATTERN:
                seen += 1
                stop = start + self.length
                if not text.startswith(literal, start) and (edges is None or edges.hold(text, start, stop)):
                    found.append((start, stop))
                start = view.find(twin, start + 1)
        return found


def homophonic(pattern_id: int, pattern: PatternSpec, syllables: SyllableEdges | None) -> Homophonic:
    """How `pattern`'s hits on the homophone view are read: as a literal when it and its twins are
    fixed characters (with `\\b` at most at their ends), else by RE2."""
    literal = literal_chars(pattern.expression) if pattern.fixed_length is not None else None
    twins = [literal_chars(twin) for twin in pattern.homophones]
    if literal is not None and all(twin is not None and len(twin[0]) == len(literal[0]) for twin in twins):
        chars, edges = literal
        return Homophonic(
            pattern_id,
            pattern.single_match,
            len(chars),
            chars,
            syllables or edges,
            None,
            tuple(twin for twin in twins if twin is not None),
            (),
        )
    return Homophonic(
        pattern_id,
        pattern.single_match,
        pattern.fixed_length or 0,
        None,
        None,
        re2.compile(pattern.expression, RE2_OPTIONS),
        (),
        tuple(re2.compile(twin, RE2_OPTIONS) for twin in pattern.homophones),
    )
