"""The trigger index: for each rule, a necessary condition cheap to test before evaluating it.

The classifier evaluates a rule only when its trigger fires, so a text event without a link
never pays for a rule that only a payment, a media hash or a link's host can make true, and an
event whose text a model scores low never evaluates the rules that need a high score.
A trigger is a pattern hit, an event kind, or a model's score of a field reaching a threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from service.engine import conditions as c
from service.engine.classifier import CompiledRule, EventKind, ScoredRules
from service.engine.counting import Counted
from service.engine.model_score import ModelScore
from service.engine.textmodel import NgramModel
from service.events import EVENT_TYPES

ALL_KINDS: Final[frozenset[EventKind]] = frozenset((t, linked) for t in EVENT_TYPES for linked in (False, True))

Triggers = dict[tuple[int, int], tuple[int, ...]]  # (channel, pattern id) → rule indexes
Untriggered = dict[EventKind, tuple[int, ...]]  # event kind → rules evaluated without a hit
# A model's score of a field reaches this threshold, on a text it reads at least this many
# characters of (the condition's min_chars).
Score = tuple[NgramModel, str, float, int]


@dataclass(frozen=True)
class TriggerIndex:
    triggers: Triggers
    untriggered: Untriggered
    scored: tuple[ScoredRules, ...]


def trigger_index(rules: Sequence[CompiledRule]) -> TriggerIndex:
    triggers: dict[tuple[int, int], list[int]] = {}
    untriggered: dict[EventKind, list[int]] = {kind: [] for kind in ALL_KINDS}
    scored: dict[tuple[NgramModel, str], dict[float, list[int]]] = {}
    shortest: dict[tuple[NgramModel, str], int] = {}  # ScoredRules.shortest: from the least min_chars
    for index, rule in enumerate(rules):
        trigger = _trigger(rule.condition)
        for key in trigger.hits:
            triggers.setdefault(key, []).append(index)
        for kind in sorted(trigger.kinds):
            untriggered[kind].append(index)
        for model, field, threshold, min_chars in trigger.scores:
            scored.setdefault((model, field), {}).setdefault(threshold, []).append(index)
            least = model.shortest_text(min_chars)
            shortest[model, field] = min(shortest.get((model, field), least), least)
    return TriggerIndex(
        {key: tuple(v) for key, v in triggers.items()},
        {key: tuple(v) for key, v in untriggered.items() if v},
        tuple(
            ScoredRules(
                model,
                field,
                tuple((threshold, tuple(sorted(set(r)))) for threshold, r in sorted(by.items())),
                shortest[model, field],
            )
            for (model, field), by in scored.items()
        ),
    )


@dataclass(frozen=True)
class _Trigger:
    """A necessary condition for a node to hold: one of `hits` was scanned, one of `scores` was
    reached, or the event is of one of `kinds`."""

    hits: frozenset[tuple[int, int]]
    kinds: frozenset[EventKind]
    scores: frozenset[Score] = frozenset()

    @property
    def cost(self) -> tuple[int, int, int]:
        # Kinds fire on every event of the kind; a score only when a text scores high (the score
        # itself is computed once per text for all rules), hits only on a scan hit.
        return (len(self.kinds), len(self.scores), len(self.hits))


_ANYTHING: Final = _Trigger(frozenset(), ALL_KINDS)


def _kinds(predicate: Callable[[EventKind], bool]) -> _Trigger:
    return _Trigger(frozenset(), frozenset(kind for kind in ALL_KINDS if predicate(kind)))


def _trigger(node: c.Condition) -> _Trigger:
    if isinstance(node, Counted):
        return _trigger(node.gate)
    if isinstance(node, c.TextHit):
        return _Trigger(frozenset((node.channel, i) for i in node.pattern_ids), frozenset())
    if isinstance(node, c.Near):
        return _Trigger(frozenset((node.channel, i) for i in node.a_ids), frozenset())
    if isinstance(node, ModelScore):
        return _Trigger(frozenset(), frozenset(), frozenset({(node.model, node.field, node.min_score, node.min_chars)}))
    if isinstance(node, c.TypeIs):
        return _kinds(lambda kind: kind[0] in node.types)
    if isinstance(node, c.MediaHashNear):
        return _kinds(lambda kind: kind[0] in c.MEDIA_TYPES)
    if isinstance(node, c.LinkDomainIn):
        return _kinds(lambda kind: kind[1])
    if isinstance(node, c.AllOf):
        # Every child is necessary: the cheapest one will do, or all kind-only children together.
        children = [_trigger(child) for child in node.children]
        options = [t for t in children if t.hits or t.scores]
        kind_only = [t.kinds for t in children if not t.hits and not t.scores]
        if kind_only:
            options.append(_Trigger(frozenset(), frozenset.intersection(*kind_only)))
        return min(options, key=lambda t: t.cost, default=_ANYTHING)
    if isinstance(node, c.AnyOf | c.AtLeast):
        # Some child holds: a hit of any child, or a kind on which enough children can hold
        # without a hit.
        children = [_trigger(child) for child in node.children]
        needed = node.count if isinstance(node, c.AtLeast) else 1
        kinds = frozenset(k for k in ALL_KINDS if sum(1 for t in children if k in t.kinds) >= needed)
        return _Trigger(
            frozenset().union(*(t.hits for t in children)), kinds, frozenset().union(*(t.scores for t in children))
        )
    # Any other node (payment, role, chat, calendar, forward, not, …) may hold on any event.
    return _ANYTHING
