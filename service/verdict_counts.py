"""Verdict counts by metric label set: what `metrics.record_counts` increments, as plain numbers.

Every door counts its verdicts this way, per batch: the stream pipeline, the counter owner and
HTTP's tally (api/verdict_tally.py). Pure (no prometheus import): the pipeline that counts is pure.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable

from service.events import Verdict


@dataclasses.dataclass(frozen=True, slots=True)
class VerdictCounts:
    total: int
    actions: dict[str, int]
    rules: dict[tuple[str, str, str], int]  # (rule, category, shadow) → matches
    categories: dict[tuple[str, str], int]  # (category, shadow) → matches


def count_verdicts(verdicts: Iterable[Verdict], plain_allows: int = 0) -> VerdictCounts:
    """The counts of `verdicts` plus `plain_allows` verdicts counted without their structs
    (allow, no match: the stream pipeline only counts those)."""
    actions: Counter[str] = Counter()
    rules: Counter[tuple[str, str, str]] = Counter()
    categories: Counter[tuple[str, str]] = Counter()
    total = plain_allows
    if plain_allows:
        actions["allow"] = plain_allows
    for verdict in verdicts:
        total += 1
        actions[verdict.action] += 1
        for match in verdict.matches:
            shadow = "true" if match.shadow else "false"
            rules[(match.rule, match.category, shadow)] += 1
            categories[(match.category, shadow)] += 1
    return VerdictCounts(total, dict(actions), dict(rules), dict(categories))
