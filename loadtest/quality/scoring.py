"""Classify labelled rows and count, per category, flags on positive and negative rows.

A row is *flagged* for a category when a non-shadow match of that category has an action other
than `allow` (what an officer would see). Shadow matches are counted separately: they show what
a shadow rule would add if it were switched on.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from loadtest.quality.datasets import Row
from service.engine.classifier import Engine
from service.events import Chat, ChatEvent, Match, Verdict

CLOCK = datetime(2025, 1, 1, tzinfo=UTC)  # fixed: no election window, results never depend on the day


def text_event(event_id: str, text: str) -> ChatEvent:
    return ChatEvent(id=event_id, text=text, chat=Chat(id="quality"))


def classify_texts(engine: Engine, items: Iterable[tuple[str, str]]) -> list[Verdict]:
    return engine.classify_batch([text_event(i, t) for i, t in items], CLOCK)


def acted(verdict: Verdict) -> list[Match]:
    return [m for m in verdict.matches if not m.shadow and m.action != "allow"]


def acted_by_keywords(verdict: Verdict) -> list[Match]:
    """`acted`, without the matches a learned model took part in: the keyword rules alone."""
    return [m for m in acted(verdict) if not any(e.field.startswith("classifier.") for e in m.evidence)]


def shadowed(verdict: Verdict) -> list[Match]:
    return [m for m in verdict.matches if m.shadow and m.action != "allow"]


@dataclass
class FalsePositive:
    row_id: str
    group: str
    text: str
    rules: list[tuple[str, str, list[str]]]  # (rule, action, evidence texts)


@dataclass
class DatasetScore:
    name: str
    positives: int = 0
    negatives: int = 0
    group_sizes: Counter[str] = field(default_factory=Counter)
    # category → count of flagged rows
    flagged_positive: Counter[str] = field(default_factory=Counter)
    flagged_negative: Counter[str] = field(default_factory=Counter)
    shadow_positive: Counter[str] = field(default_factory=Counter)
    shadow_negative: Counter[str] = field(default_factory=Counter)
    # (group, category or "*") → flagged rows; "*" is any category
    flagged_by_group: Counter[tuple[str, str]] = field(default_factory=Counter)
    negative_groups: set[str] = field(default_factory=set)
    rule_false_positives: Counter[str] = field(default_factory=Counter)
    false_positives: list[FalsePositive] = field(default_factory=list)

    def precision(self, category: str) -> float | None:
        flagged = self.flagged_positive[category] + self.flagged_negative[category]
        return self.flagged_positive[category] / flagged if flagged else None

    def recall(self, category: str) -> float:
        return self.flagged_positive[category] / self.positives if self.positives else 0.0

    def group_rate(self, group: str, category: str = "*") -> float:
        size = self.group_sizes[group]
        return self.flagged_by_group[(group, category)] / size if size else 0.0

    def false_positive_rate(self, category: str = "*") -> float:
        flagged = sum(
            n for (group, cat), n in self.flagged_by_group.items() if cat == category and group in self.negative_groups
        )
        return flagged / self.negatives if self.negatives else 0.0



def score(
    name: str, rows: Sequence[Row], verdicts: Sequence[Verdict], *, union: dict[str, set[str]] | None = None
) -> DatasetScore:
    """Count flags per category and group. `union` names extra pseudo-categories (e.g.
    "obscene|improper") flagged when any of their member categories is."""
    result = DatasetScore(name)
    unions = union or {}
    for row, verdict in zip(rows, verdicts, strict=True):
        result.group_sizes[row.group] += 1
        if row.positive:
            result.positives += 1
        else:
            result.negatives += 1
            result.negative_groups.add(row.group)
        matches = acted(verdict)
        categories = {m.category for m in matches}
        categories |= {u for u, members in unions.items() if categories & members}
        if categories:
            categories.add("*")
        for category in categories:
            (result.flagged_positive if row.positive else result.flagged_negative)[category] += 1
            result.flagged_by_group[(row.group, category)] += 1
        for category in {m.category for m in shadowed(verdict)}:
            (result.shadow_positive if row.positive else result.shadow_negative)[category] += 1
        if matches and not row.positive:
            for m in matches:
                result.rule_false_positives[m.rule] += 1
            result.false_positives.append(FalsePositive(
                row.id, row.group, row.text,
                [(m.rule, m.action, [e.text for e in m.evidence]) for m in matches],
            ))
    return result


def categories_seen(scores: Iterable[DatasetScore]) -> list[str]:
    seen: dict[str, None] = defaultdict(lambda: None)
    for s in scores:
        for c in (*s.flagged_positive, *s.flagged_negative):
            if c != "*":
                seen[c]
    return sorted(seen)
