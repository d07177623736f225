"""A batch of events scanned and scored at once: what `Engine.evaluate_batch` evaluates.

For each planned field (plan.py) the batch's values are normalised together
(normalize_batch.py), each channel's view is scanned once for the whole batch
(FieldMatcher.scan_batch), and each model scores the batch's texts in one call
(NgramModel.score_batch). What comes back per event is what the per-event path computes for
it: the same scan results, the same scores, and so the same rules to evaluate; an event none of
whose rules can hold is a plain allow and is never evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.engine.conditions import ScanResult
from service.engine.normalize import NormalizedText
from service.engine.normalize_batch import normalize_batch
from service.engine.plan import FIELD_GETTERS, EventKind, PlanGroup, ScoredRules
from service.events import ChatEvent

Scores = dict[tuple[str, str], float]


@dataclass(slots=True)
class Findings:
    """Per event of a batch: the rules to evaluate (None: no rule can hold), the channels' scan
    results (None: no channel hit), and the model scores by (model, field)."""

    candidates: list[set[int] | None]
    scans: list[list[ScanResult | None] | None]
    score_columns: list[tuple[tuple[str, str], dict[int, float]]]

    def scores_of(self, index: int) -> Scores | None:
        if not self.score_columns:
            return None
        return {key: column[index] for key, column in self.score_columns if index in column}


def find_batch(
    events: Sequence[ChatEvent],
    plan: Sequence[PlanGroup],
    channel_count: int,
    untriggered: Mapping[EventKind, tuple[int, ...]],
    scored: Sequence[ScoredRules],
) -> Findings:
    candidates: list[set[int] | None] = [None] * len(events)
    for index, event in enumerate(events):
        kinds = untriggered.get((event.type, event.link is not None))
        if kinds:
            candidates[index] = set(kinds)
    scans: list[list[ScanResult | None] | None] = [None] * len(events)
    for group in plan:
        getter = group.getter
        values = [getter(event) for event in events]
        present = [index for index, value in enumerate(values) if value]
        if not present:
            continue
        batch = normalize_batch(group.normalizer, [values[index] for index in present])
        normalized: dict[int, NormalizedText] = {}
        for channel, matcher, triggers in group.members:
            for local, hits in matcher.scan_batch(batch).items():
                index = present[local]
                text = normalized.get(local)
                if text is None:
                    text = normalized[local] = batch.normalized(local)
                event_scans = scans[index]
                if event_scans is None:
                    event_scans = scans[index] = [None] * channel_count
                event_scans[channel] = ScanResult(group.field, values[index], text, hits)
                for pattern_id in hits:
                    triggered = triggers.get(pattern_id)
                    if triggered:
                        _add(candidates, index, triggered)
    columns: list[tuple[tuple[str, str], dict[int, float]]] = []
    for entry in scored:
        getter = FIELD_GETTERS[entry.field]
        values = [getter(event) for event in events]
        shortest = entry.shortest
        present = [index for index, value in enumerate(values) if len(value) >= shortest]
        if not present:
            continue
        scores = entry.model.score_batch([values[index] for index in present])
        columns.append((entry.key, dict(zip(present, scores.tolist(), strict=True))))
        for threshold, rules in entry.thresholds:
            for local in np.flatnonzero(scores >= threshold).tolist():
                _add(candidates, present[local], rules)
    return Findings(candidates, scans, columns)


def _add(candidates: list[set[int] | None], index: int, rules: tuple[int, ...]) -> None:
    found = candidates[index]
    if found is None:
        candidates[index] = set(rules)
    else:
        found.update(rules)
