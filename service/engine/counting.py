"""Counter conditions (`seen`): "the same content / sender / chat seen ≥ N times within T".

The engine does not hold counts: they are global state, owned per key by one replica
(service/counters, docs/counters.md). A rule with `seen` conditions compiles to a `Counted` node
whose `gate` is the rest of the rule's top-level `all`. Evaluated without counts (the first pass of
the stream), a holding gate records one `Sighting` per `seen` — what to count and under which key,
returned in the evaluation's `Outcome` — and the rule does not match yet. Evaluated with counts
(the owner of the last key, after counting), each `seen` holds when its count reached `at_least`.
Only events whose gate holds are counted: a rumour rule counts rumour-marked content, not every
message.

Pure: keys are computed from the event; no clock, no state.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from service.engine.normalize import Normalizer
from service.events import ChatEvent, Evidence

if TYPE_CHECKING:
    from service.engine.conditions import Condition, EvalContext

CountedOf = Literal["content", "sender", "chat"]
DistinctBy = Literal["chat", "sender", "event"]

# After normalisation a fingerprint ignores what is left of punctuation, spaces and symbols, so a
# forward that only re-punctuates or re-spaces a message is the same content.
_NOT_WORD: Final = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class Sighting:
    """One event to count under `state_key`: its `member` (what `distinct` counts) at `at`."""

    state_key: str  # "<counter id>|<key value>": routes the update to the key's one owner
    member: str
    at: float  # event time, epoch seconds
    at_least: int  # threshold: the owner keeps at most this many members per key
    within_seconds: float


@dataclass(frozen=True, slots=True)
class Seen:
    """One `seen` condition of a rule; `counter_id` names its state (rule id, position, spec)."""

    counter_id: str
    of: CountedOf
    distinct: DistinctBy
    at_least: int
    within_seconds: float
    fingerprint: Normalizer  # folds text before hashing (width, case, traditional, separators)

    def key_value(self, event: ChatEvent) -> str | None:
        """What this counter counts the event under; None when the event has no such thing."""
        if self.of == "sender":
            return event.sender.id if event.sender is not None and event.sender.id else None
        if self.of == "chat":
            return event.chat.id if event.chat is not None else None
        return content_fingerprint(event, self.fingerprint)

    def member(self, event: ChatEvent) -> str | None:
        if self.distinct == "event":
            return event.id
        if self.distinct == "chat":
            return event.chat.id if event.chat is not None else None
        return event.sender.id if event.sender is not None and event.sender.id else None

    def sighting(self, ctx: EvalContext) -> Sighting | None:
        event = ctx.event
        key = self.key_value(event)
        member = self.member(event)
        if key is None or member is None:
            return None
        return Sighting(f"{self.counter_id}|{key}", member, ctx.at.timestamp(), self.at_least, self.within_seconds)


@dataclass(frozen=True, slots=True)
class Counted:
    """A rule's top-level `all` with its `seen` members split off (see the module docstring)."""

    gate: Condition
    seen: tuple[Seen, ...]

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        gate_evidence: list[Evidence] = []
        if not self.gate.holds(ctx, gate_evidence):
            return False
        counts = ctx.counts
        if counts is None:
            if ctx.sightings is not None:
                found = [s for node in self.seen if (s := node.sighting(ctx)) is not None]
                if len(found) == len(self.seen):  # one key missing: this event cannot be counted
                    ctx.sightings.extend(found)
            return False
        for node in self.seen:
            sighting = node.sighting(ctx)
            if sighting is None or counts.get(sighting.state_key, 0) < node.at_least:
                return False
        evidence.extend(gate_evidence)
        return True


def content_fingerprint(event: ChatEvent, fold: Normalizer) -> str | None:
    """The same content across chats: folded text, else the media, link or file it carries."""
    if event.text:
        folded = _NOT_WORD.sub("", fold.normalize(event.text).text)
        if folded:
            return "t:" + hashlib.blake2b(folded.encode(), digest_size=12).hexdigest()
    media = event.media
    if media is not None:
        if media.sha256:
            return "s:" + media.sha256.lower()
        if media.pdq:
            return "p:" + media.pdq[0].lower()
    if event.link is not None and event.link.url:
        return "l:" + hashlib.blake2b(event.link.url.encode(), digest_size=12).hexdigest()
    if event.file is not None:
        return "f:" + hashlib.blake2b(f"{event.file.name}\x00{event.file.size}".encode(), digest_size=12).hexdigest()
    return None


def counts_for(sightings: Iterable[Sighting], count: int) -> Mapping[str, int]:
    """Every sighting's key at one count: how rule examples say "seen N times"."""
    return {s.state_key: count for s in sightings}
