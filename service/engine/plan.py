"""What an engine does with an event, planned once per pack: which field feeds which normaliser,
which databases scan the result, which rules a pattern hit can make true, and which rules a
model's score of a field can make true. The per-event path (classifier.py) and the batch path
(batch.py) follow the same plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from service.engine.matcher import FieldMatcher
from service.engine.normalize import Normalizer
from service.engine.textmodel import NgramModel
from service.events import ChatEvent


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
class ScoredRules:
    """The rules a model's score of one field can make true (`classifier` conditions): for each
    (threshold, rules), the rules are evaluated for an event whose score reaches the threshold."""

    model: NgramModel
    field: str
    thresholds: tuple[tuple[float, tuple[int, ...]], ...]  # ascending
    # The fewest characters a text needs for a score of it to make one of the rules true (from
    # the least `min_chars` of their conditions, `NgramModel.shortest_text`): a shorter one is not
    # scored (a chat's 好的, ok, 👍 under min_chars 3). An empty text never is.
    shortest: int = 1

    @property
    def key(self) -> tuple[str, str]:
        """Where the score is kept for the event's conditions (EvalContext.scores)."""
        return self.model.name, self.field


# What decides which rules a text-less event can trigger: its type and whether it has a link.
EventKind = tuple[str, bool]


class PlanGroup(NamedTuple):
    """The channels of one field that share a normaliser: normalised once, scanned per channel."""

    field: str
    getter: Callable[[ChatEvent], str]
    normalizer: Normalizer
    # (channel index, its matcher, its pattern id → the rules a hit triggers)
    members: tuple[tuple[int, FieldMatcher, dict[int, tuple[int, ...]]], ...]


def plan_channels(
    channels: Sequence[Channel], triggers: Mapping[tuple[int, int], tuple[int, ...]]
) -> tuple[PlanGroup, ...]:
    groups: dict[tuple[str, int], list[tuple[int, FieldMatcher, dict[int, tuple[int, ...]]]]] = {}
    normalizers: dict[tuple[str, int], Normalizer] = {}
    for index, channel in enumerate(channels):
        key = (channel.field, id(channel.normalizer))
        normalizers[key] = channel.normalizer
        own = {pid: rules for (ch, pid), rules in triggers.items() if ch == index}
        groups.setdefault(key, []).append((index, channel.matcher, own))
    return tuple(
        PlanGroup(field_name, FIELD_GETTERS[field_name], normalizers[(field_name, nid)], tuple(members))
        for (field_name, nid), members in groups.items()
    )
