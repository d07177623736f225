"""The classifier: normalise → scan → evaluate the rules a hit or the event type can trigger.

An `Engine` is immutable once compiled; a reload builds a new one and swaps a reference.
It is pure: the caller passes the clock reading (`now`) and receives a value: `evaluate` gives an
`Outcome` (the verdict and what the event must be counted under), `classify` the verdict alone.
`evaluate_batch` and `classify_batch` give the same for many events at once, scanning and scoring
the batch in a few calls (batch.py): a batch's outcome for an event is the outcome `evaluate`
gives for that event alone, evidence offsets included. A batch call has a fixed cost (the NumPy
set-up per field and view, one Hyperscan scan per database: ~0.2 ms with the default pack) that
a few events do not repay, so a batch of fewer than `PER_EVENT_BELOW` events is decided one by one.
One engine must be used from one thread at a time (Hyperscan scratch space is per database).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import msgspec

from service.engine.batch import Scores, find_batch
from service.engine.conditions import Condition, EvalContext, ScanResult
from service.engine.counting import Counted, Sighting
from service.engine.folds import holds_only_folded
from service.engine.plan import FIELD_GETTERS, Channel, EventKind, PlanGroup, ScoredRules, plan_channels
from service.events import (
    ACTION_RANK,
    SEVERITY_RANK,
    Action,
    ChatEvent,
    Evidence,
    Match,
    RulesetRef,
    Severity,
    Verdict,
)

# Re-exported: the compiler and the tools name these from here.
__all__ = ["FIELD_GETTERS", "Channel", "CompiledRule", "Engine", "EventKind", "Exemption", "Outcome", "ScoredRules"]

# Below this many events a batch is decided one event at a time: with the default pack the batch
# path costs 79 µs per event in pairs, 33 in tens, 24 in twenties, 21 in thirties and 14 in
# hundreds, against 23-24 one by one (CPU time, sample traffic: loadtest.engine_batch_bench).
PER_EVENT_BELOW: Final = 24

@dataclass(frozen=True, slots=True)
class Exemption:
    """`unless`: when it holds, the rule's match is kept but its action (and severity) lowered."""

    condition: Condition
    action: Action
    severity: Severity | None
    reason: str


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    category: str
    severity: Severity
    action: Action
    shadow: bool
    reason: str
    condition: Condition
    exemptions: tuple[Exemption, ...]
    # The strongest action of a match that holds only through folded readings (engine/folds.py).
    folded_action: Action = "review"


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """What one evaluation decided. `sightings`: what the event must be counted under before its
    counter rules can hold (evaluated without counts; service.engine.counting), else empty."""

    verdict: Verdict
    sightings: tuple[Sighting, ...] = ()


@dataclass(frozen=True)
class Engine:
    ruleset: RulesetRef
    categories: dict[str, str]  # id → description
    channels: tuple[Channel, ...]
    rules: tuple[CompiledRule, ...]
    # Which rules a pattern hit can make true: (channel, pattern id) → rule indices.
    triggers: dict[tuple[int, int], tuple[int, ...]]
    # Rules that can hold without any text hit, by event kind (type, has a link).
    untriggered: dict[EventKind, tuple[int, ...]]
    # Rules that only a model's high score of a field can make true (plan.ScoredRules).
    scored: tuple[ScoredRules, ...] = ()
    _plan: tuple[PlanGroup, ...] = field(init=False, repr=False, compare=False)
    _has_counters: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", plan_channels(self.channels, self.triggers))
        object.__setattr__(self, "_has_counters", any(isinstance(r.condition, Counted) for r in self.rules))

    @property
    def has_counters(self) -> bool:
        """Whether any rule has counter conditions (`seen`): the stream then counts sightings."""
        return self._has_counters

    def evaluate(self, event: ChatEvent, now: datetime, counts: Mapping[str, int] | None = None) -> Outcome:
        """The verdict, and without `counts` what the event must be counted under; counter
        conditions hold only with `counts` given (service.engine.counting)."""
        sightings: list[Sighting] | None = [] if counts is None and self._has_counters else None
        verdict = self._decide(event, now, counts, sightings)
        return Outcome(verdict, tuple(sightings)) if sightings else Outcome(verdict)

    def classify(self, event: ChatEvent, now: datetime, counts: Mapping[str, int] | None = None) -> Verdict:
        """The verdict alone (HTTP, the CLI, replay): nothing is counted on those doors."""
        return self._decide(event, now, counts, None)

    def evaluate_batch(
        self,
        events: Sequence[ChatEvent],
        now: datetime,
        counts: Sequence[Mapping[str, int] | None] | None = None,
        *,
        per_event_below: int = PER_EVENT_BELOW,
    ) -> list[Outcome]:
        """`evaluate` of each event (with `counts[i]` when given), in order, the batch scanned and
        scored at once (batch.py) unless it holds fewer than `per_event_below` events (0: always
        at once). Its cost grows with the batch's characters like the events' one by one; a caller
        bounds a batch's size by what it may hold the thread for."""
        if len(events) < per_event_below:
            if counts is None:
                return [self.evaluate(event, now) for event in events]
            return [self.evaluate(event, now, c) for event, c in zip(events, counts, strict=True)]
        return [
            Outcome(verdict, tuple(sightings)) if sightings else Outcome(verdict)
            for verdict, sightings in self._decide_batch(events, now, counts, self._has_counters)
        ]

    def classify_batch(
        self, events: Sequence[ChatEvent], now: datetime, *, per_event_below: int = PER_EVENT_BELOW
    ) -> list[Verdict]:
        """`classify` of each event, in order, the batch scanned and scored at once (as in
        `evaluate_batch`, a batch of fewer than `per_event_below` events one by one)."""
        if len(events) < per_event_below:
            return [self._decide(event, now, None, None) for event in events]
        return [verdict for verdict, _ in self._decide_batch(events, now, None, False)]

    def _decide_batch(
        self,
        events: Sequence[ChatEvent],
        now: datetime,
        counts: Sequence[Mapping[str, int] | None] | None,
        counters: bool,
    ) -> list[tuple[Verdict, list[Sighting] | None]]:
        findings = find_batch(events, self._plan, len(self.channels), self.untriggered, self.scored)
        ruleset = self.ruleset
        empty: list[ScanResult | None] = [None] * len(self.channels)
        decided: list[tuple[Verdict, list[Sighting] | None]] = []
        for index, event in enumerate(events):
            candidates = findings.candidates[index]
            if not candidates:  # most events: nothing can hold
                decided.append((Verdict(event.id, "allow", "none", (), ruleset, now), None))
                continue
            event_counts = None if counts is None else counts[index]
            sightings: list[Sighting] | None = [] if counters and event_counts is None else None
            scans = findings.scans[index] or list(empty)
            verdict = self._judge(event, now, event_counts, sightings, scans, candidates, findings.scores_of(index))
            decided.append((verdict, sightings))
        return decided

    def _decide(
        self, event: ChatEvent, now: datetime, counts: Mapping[str, int] | None, sightings: list[Sighting] | None
    ) -> Verdict:
        scans: list[ScanResult | None] = [None] * len(self.channels)
        candidates: set[int] = set(self.untriggered.get((event.type, event.link is not None), ()))
        for field_name, getter, normalizer, members in self._plan:
            value = getter(event)
            if not value:
                continue
            normalized = normalizer.normalize(value)
            for index, matcher, triggers in members:
                hits = matcher.scan(normalized.text)
                if not hits:
                    continue
                scans[index] = ScanResult(field_name, value, normalized, hits)
                for pattern_id in hits:
                    triggered = triggers.get(pattern_id)
                    if triggered:
                        candidates.update(triggered)
        scores = self._scores(event, candidates) if self.scored else None
        if not candidates:
            return Verdict(event.id, "allow", "none", (), self.ruleset, now)
        return self._judge(event, now, counts, sightings, scans, candidates, scores)

    def _scores(self, event: ChatEvent, candidates: set[int]) -> Scores:
        """The event's model scores, the rules a high score triggers added to `candidates`."""
        scores: Scores = {}
        for entry in self.scored:
            text = FIELD_GETTERS[entry.field](event)
            if len(text) < entry.shortest:
                continue
            score = scores[entry.key] = entry.model.score(text)
            for threshold, rules in entry.thresholds:
                if score >= threshold:
                    candidates.update(rules)
        return scores

    def _judge(
        self,
        event: ChatEvent,
        now: datetime,
        counts: Mapping[str, int] | None,
        sightings: list[Sighting] | None,
        scans: list[ScanResult | None],
        candidates: set[int],
        scores: Scores | None,
    ) -> Verdict:
        """Evaluate the candidate rules, in rule order, into the verdict."""
        at = event.sent_at or now
        if at.tzinfo is not UTC:  # conditions compare in UTC (calendar windows are compiled so)
            at = _in_utc(at)
        ctx = EvalContext(event, at, scans, counts, sightings, scores)
        compiled = self.rules
        ordered = sorted(candidates) if len(candidates) > 1 else candidates
        matches = [m for i in ordered if (m := _evaluate(compiled[i], ctx)) is not None]
        return _verdict(event.id, matches, self.ruleset, now)


def _in_utc(at: datetime) -> datetime:
    """`at` in UTC; the doors refuse a time that leaves datetime's range in UTC (9999-12-31T23:59
    at -23:59), and the engine, total over its input, reads one as the range's end."""
    try:
        return at.astimezone(UTC)
    except OverflowError:
        return (datetime.max if at.year == datetime.max.year else datetime.min).replace(tzinfo=UTC)


def _evaluate(rule: CompiledRule, ctx: EvalContext) -> Match | None:
    evidence: list[Evidence] = []
    if not rule.condition.holds(ctx, evidence):
        return None
    action: Action = rule.action
    severity: Severity = rule.severity
    reason = rule.reason
    for exemption in rule.exemptions:
        exempt_evidence: list[Evidence] = []
        if exemption.condition.holds(ctx, exempt_evidence):
            action = exemption.action
            severity = exemption.severity or severity
            reason = f"{reason} (lowered: {exemption.reason})"
            evidence.extend(exempt_evidence)
            break
    if ACTION_RANK[action] > ACTION_RANK[rule.folded_action] and holds_only_folded(rule.condition, ctx):
        action = rule.folded_action
        reason = f"{reason} (only through a folded reading: at most {rule.folded_action})"
    return Match(rule.id, rule.category, severity, action, rule.shadow, _dedupe(evidence), reason)


def _dedupe(evidence: list[Evidence]) -> tuple[Evidence, ...]:
    if len(evidence) < 2:
        return tuple(evidence)
    return tuple(dict.fromkeys(evidence))


def _verdict(event_id: str, matches: Sequence[Match], ruleset: RulesetRef, now: datetime) -> Verdict:
    action: Action = "allow"
    severity: Severity = "none"
    for match in matches:
        if match.shadow:
            continue
        if ACTION_RANK[match.action] > ACTION_RANK[action]:
            action = match.action
        # A match lowered to `allow` stays in the audit trail but does not raise the severity.
        if match.action != "allow" and SEVERITY_RANK[match.severity] > SEVERITY_RANK[severity]:
            severity = match.severity
    return Verdict(event_id, action, severity, tuple(matches), ruleset, now)
