"""The classifier: normalise → scan → evaluate the rules a hit or the event type can trigger.

An `Engine` is immutable once compiled; a reload builds a new one and swaps a reference.
It is pure: the caller passes the clock reading (`now`) and receives a value: `evaluate` gives an
`Outcome` (the verdict and what the event must be counted under), `classify` the verdict alone.
One engine must be used from one thread at a time (Hyperscan scratch space is per database).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import msgspec

from service.engine.conditions import Condition, EvalContext, ScanResult
from service.engine.counting import Counted, Sighting
from service.engine.folds import holds_only_folded
from service.engine.matcher import FieldMatcher
from service.engine.normalize import Normalizer
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


def _text(event: ChatEvent) -> str:
    return event.text


def _file_name(event: ChatEvent) -> str:
    return event.file.name if event.file is not None else ""


def _link_url(event: ChatEvent) -> str:
    return event.link.url if event.link is not None else ""


# The scanned text fields of an event; an absent file or link reads as "". Named functions, not
# lambdas: a compiled engine pickles (a pack is compiled in a child process).
FIELD_GETTERS: Final[dict[str, Callable[[ChatEvent], str]]] = {
    "text": _text,
    "file.name": _file_name,
    "link.url": _link_url,
}


@dataclass(frozen=True, slots=True)
class Channel:
    """A field scanned under one normalisation profile with its own pattern database."""

    field: str
    normalizer: Normalizer  # channels of one field sharing a normaliser normalise once
    matcher: FieldMatcher


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


# What decides which rules a text-less event can trigger: its type and whether it has a link.
EventKind = tuple[str, bool]

# (field, getter, normaliser, ((channel index, database, pattern id → rule indices), …))
_PlanGroup = tuple[
    str,
    Callable[[ChatEvent], str],
    Normalizer,
    tuple[tuple[int, FieldMatcher, dict[int, tuple[int, ...]]], ...],
]


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
    _plan: tuple[_PlanGroup, ...] = field(init=False, repr=False, compare=False)
    _has_counters: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Per-event work is planned once: which field getter feeds which normaliser, which
        # databases scan the result, and each database's pattern id → rule indices.
        groups: dict[tuple[str, int], list[tuple[int, FieldMatcher, dict[int, tuple[int, ...]]]]] = {}
        normalizers: dict[tuple[str, int], Normalizer] = {}
        for index, channel in enumerate(self.channels):
            key = (channel.field, id(channel.normalizer))
            normalizers[key] = channel.normalizer
            triggers = {pid: rules for (ch, pid), rules in self.triggers.items() if ch == index}
            groups.setdefault(key, []).append((index, channel.matcher, triggers))
        plan = tuple(
            (field_name, FIELD_GETTERS[field_name], normalizers[(field_name, nid)], tuple(members))
            for (field_name, nid), members in groups.items()
        )
        object.__setattr__(self, "_plan", plan)
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

    def classify_batch(self, events: Iterable[ChatEvent], now: datetime) -> list[Verdict]:
        decide = self._decide
        return [decide(event, now, None, None) for event in events]

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
        if not candidates:
            return Verdict(event.id, "allow", "none", (), self.ruleset, now)
        at = event.sent_at or now
        if at.tzinfo is not UTC:  # conditions compare in UTC (calendar windows are compiled so)
            at = _in_utc(at)
        ctx = EvalContext(event, at, scans, counts, sightings)
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
