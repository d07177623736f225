"""Compiled rule conditions: small frozen nodes evaluated against one event's scan results.

Each node answers `holds(ctx, evidence)`; text nodes append the spans that made them true.
`Not` evaluates its child with a scratch list, so what it negates never becomes evidence.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

import re2

from service.engine.hashbank import HashBank, HashMatch
from service.engine.normalize import NormalizedText
from service.engine.patterns import Hits
from service.events import ChatEvent, Evidence

if TYPE_CHECKING:
    from service.engine.counting import Sighting


@dataclass(slots=True)
class ScanResult:
    """One scanned channel (a field under one normalisation profile) of one event."""

    field: str
    original: str
    normalized: NormalizedText
    hits: Hits
    # Where each unit of the normalised text starts (`word_unit_starts`), once a `near` asks.
    unit_starts: list[int] | None = None

    def word_unit_starts(self) -> list[int] | None:
        """The offsets at which the normalised text's units start (a run of Latin letters and
        digits is one unit, whitespace none, any other character one), or None when every
        character is a unit of its own (no whitespace, no two Latin letters or digits in a row)."""
        if self.unit_starts is None:
            text = self.normalized.text
            if _SEVERAL_CHARACTER_UNIT.search(text) is None:
                self.unit_starts = _EVERY_CHARACTER
            else:
                self.unit_starts = [unit.start() for unit in _UNIT.finditer(text)]
        return None if self.unit_starts is _EVERY_CHARACTER else self.unit_starts


@dataclass(slots=True)
class EvalContext:
    event: ChatEvent
    at: datetime  # the event's sent_at, or its receipt time
    scans: list[ScanResult | None]  # indexed by channel
    # Counter conditions (service.engine.counting): the counts by state key when known; else,
    # when `sightings` is a list, what the event must be counted under is appended to it.
    counts: Mapping[str, int] | None = None
    sightings: list[Sighting] | None = None
    # Model scores by (model name, field), computed once per event (service.engine.model_score).
    scores: dict[tuple[str, str], float] | None = None

    def evidence(self, channel: int, span: tuple[int, int]) -> Evidence:
        scan = self.scans[channel]
        assert scan is not None
        start, end = scan.normalized.original_span(*span)
        return Evidence(scan.field, start, end, scan.original[start:end])


class Condition(Protocol):
    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool: ...


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Condition, ...]

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        # Plain loops (SIM110 off): all()/any() over a generator cost ~0.3 µs more per call, and
        # these run on every rule evaluation.
        for child in self.children:  # noqa: SIM110
            if not child.holds(ctx, evidence):
                return False
        return True


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Condition, ...]

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        for child in self.children:  # noqa: SIM110  (a plain loop: see AllOf)
            if child.holds(ctx, evidence):
                return True
        return False


@dataclass(frozen=True, slots=True)
class AtLeast:
    count: int
    children: tuple[Condition, ...]

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        found: list[Evidence] = []
        satisfied = 0
        for child in self.children:
            if child.holds(ctx, found):
                satisfied += 1
        if satisfied >= self.count:
            evidence.extend(found)
            return True
        return False


@dataclass(frozen=True, slots=True)
class Not:
    child: Condition

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        return not self.child.holds(ctx, [])


@dataclass(frozen=True, slots=True)
class TextHit:
    """Any of the patterns matched in the channel."""

    channel: int
    pattern_ids: tuple[int, ...]
    # A lexicon condition may own thousands of ids while a scan hits a few: walk the hits.
    _id_set: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_id_set", frozenset(self.pattern_ids))

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        scan = ctx.scans[self.channel]
        if scan is None or not scan.hits:
            return False
        matched = False
        ids = self._id_set
        for pattern_id, spans in scan.hits.items():
            if pattern_id in ids:
                matched = True
                evidence.append(ctx.evidence(self.channel, spans[0]))
        return matched


@dataclass(frozen=True, slots=True)
class Near:
    """A span of `a` and a span of `b` with at most `within` units between them: characters,
    except that a word of Latin letters or digits counts as one and whitespace as none, so one
    `within` reads Chinese (a unit a hanzi) and English (a unit a word) alike."""

    channel: int
    a_ids: tuple[int, ...]
    b_ids: tuple[int, ...]
    within: int
    _a_set: frozenset[int] = field(init=False, repr=False, compare=False)
    _b_set: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_a_set", frozenset(self.a_ids))
        object.__setattr__(self, "_b_set", frozenset(self.b_ids))

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        scan = ctx.scans[self.channel]
        if scan is None or not scan.hits:
            return False
        a_spans = _spans(scan.hits, self._a_set)
        if not a_spans:
            return False
        b_spans = _spans(scan.hits, self._b_set)
        if not b_spans:
            return False
        starts = scan.word_unit_starts()  # None: every character is a unit (most Chinese text)
        if starts is None:
            pair = _close_pair(a_spans, b_spans, self.within)
        else:
            pair = _close_pair(_in_units(a_spans, starts), _in_units(b_spans, starts), self.within)
        if pair is None:
            return False
        evidence.append(ctx.evidence(self.channel, a_spans[pair[0]]))
        evidence.append(ctx.evidence(self.channel, b_spans[pair[1]]))
        return True


# What a unit of `near`'s distance is: a run of Latin letters and digits, or any other character
# but whitespace; a text holds a unit of several characters when it holds one of these.
_UNIT: Final = re.compile(r"[0-9A-Za-z]+|\S")
_SEVERAL_CHARACTER_UNIT: Final = re.compile(r"\s|[0-9A-Za-z]{2}")
# `ScanResult.unit_starts` once known to be every character (compared by identity: a text of
# whitespace only has units too — none — and its list is empty as well).
_EVERY_CHARACTER: Final[list[int]] = []


def _in_units(spans: list[tuple[int, int]], starts: list[int]) -> list[tuple[int, int]]:
    """Spans as unit offsets: each end is the number of units that start before it."""
    return [(bisect_left(starts, start), bisect_left(starts, end)) for start, end in spans]


def _close_pair(a_spans: list[tuple[int, int]], b_spans: list[tuple[int, int]], within: int) -> tuple[int, int] | None:
    """Indices of an a span and a b span with at most `within` between them, or None."""
    indices: Iterable[int] = range(len(b_spans))
    if len(a_spans) * len(b_spans) > _PAIRWISE_MAX:
        # Thousands of spans on each side (a text packed with both lexicons): every pair would
        # cost O(a·b). Find the first b that has a partner in O(log a) each, then its partner.
        has_partner = _PartnerIndex(a_spans, within)
        indices = [next((i for i, b in enumerate(b_spans) if has_partner(b)), 0)]
    for b_index in indices:
        b_span = b_spans[b_index]
        for a_index, a_span in enumerate(a_spans):
            if max(a_span[0], b_span[0]) - min(a_span[1], b_span[1]) <= within:
                return a_index, b_index
    return None


# Above this many (a, b) pairs, Near looks partners up instead of trying every pair.
_PAIRWISE_MAX = 4096


class _PartnerIndex:
    """Whether any `a` span lies within `within` characters of a given span, in O(log a): the a
    spans sorted by start, with the running maximum of their ends."""

    __slots__ = ("_max_ends", "_starts", "_within")

    def __init__(self, spans: list[tuple[int, int]], within: int) -> None:
        ordered = sorted(spans)
        self._starts = [start for start, _ in ordered]
        self._max_ends = list(accumulate((end for _, end in ordered), max))
        self._within = within

    def __call__(self, span: tuple[int, int]) -> bool:
        # An a span is close enough when a.start <= b.end + within and a.end >= b.start - within;
        # among the spans that start early enough, the furthest-reaching end decides.
        count = bisect_right(self._starts, span[1] + self._within)
        return count > 0 and self._max_ends[count - 1] >= span[0] - self._within


def _spans(hits: Hits, ids: frozenset[int]) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for pattern_id, spans in hits.items():
        if pattern_id in ids:
            found.extend(spans)
    return found


@dataclass(frozen=True, slots=True)
class TypeIs:
    types: frozenset[str]

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        return ctx.event.type in self.types


@dataclass(frozen=True, slots=True)
class PaymentIs:
    directions: frozenset[str] | None = None
    min_amount: float | None = None
    max_amount: float | None = None
    currencies: frozenset[str] | None = None

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        payment = ctx.event.payment
        if payment is None:
            return False
        if self.directions is not None and payment.direction not in self.directions:
            return False
        if self.min_amount is not None and payment.amount < self.min_amount:
            return False
        if self.max_amount is not None and payment.amount > self.max_amount:
            return False
        return self.currencies is None or payment.currency.upper() in self.currencies


@dataclass(frozen=True, slots=True)
class SenderHasRole:
    roles: frozenset[str]

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        sender = ctx.event.sender
        return sender is not None and not self.roles.isdisjoint(sender.roles)


@dataclass(frozen=True, slots=True)
class ChatIs:
    kinds: frozenset[str] | None = None
    min_members: int | None = None
    max_members: int | None = None

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        chat = ctx.event.chat
        if chat is None:
            return False
        if self.kinds is not None and chat.kind not in self.kinds:
            return False
        if self.min_members is not None and (chat.members is None or chat.members < self.min_members):
            return False
        return self.max_members is None or (chat.members is not None and chat.members <= self.max_members)


@dataclass(frozen=True, slots=True)
class FileNameLike:
    """The file name matches one of the pack's glob patterns (compiled to one RE2 regex)."""

    pattern: re2._Regexp

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        file = ctx.event.file
        if file is None:
            return False
        match = self.pattern.search(file.name)
        if match is None:
            return False
        evidence.append(Evidence("file.name", 0, len(file.name), file.name))
        return True


@dataclass(frozen=True, slots=True)
class LinkDomainIn:
    """The link's host is one of `domains` or a subdomain of one."""

    domains: frozenset[str]
    # The most labels a listed domain has: only that many of the host's last labels are joined,
    # so a host of thousands of labels costs one pass, not one join per label (that was O(n²)).
    _most_labels: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_most_labels", max((d.count(".") + 1 for d in self.domains), default=0))

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        link = ctx.event.link
        if link is None:
            return False
        host = _host_of(link.url)
        if not host:
            return False
        labels = host.rsplit(".", self._most_labels)[-self._most_labels :] if self._most_labels else []
        for i in range(len(labels) - 1):  # a bare top-level label is never a listed domain
            if ".".join(labels[i:]) in self.domains:
                start = link.url.lower().find(host)
                start = max(start, 0)
                evidence.append(Evidence("link.url", start, start + len(host), link.url[start : start + len(host)]))
                return True
        return False


def _host_of(url: str) -> str:
    candidate = url.strip()
    if "://" not in candidate:
        candidate = "//" + candidate
    try:
        host = urlsplit(candidate).hostname
    except ValueError:
        return ""
    return (host or "").rstrip(".")


@dataclass(frozen=True, slots=True)
class ForwardReaches:
    """The event is a forward whose spread reached any given threshold (none given: any forward)."""

    shares: int | None = None
    views: int | None = None

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        forward = ctx.event.forward
        if forward is None:
            return False
        if self.shares is None and self.views is None:
            return True
        return (self.shares is not None and forward.shares >= self.shares) or (
            self.views is not None and forward.views >= self.views
        )


@dataclass(frozen=True, slots=True)
class InWindow:
    """The event time falls inside one of a named calendar's [start, end) windows."""

    calendar: str
    windows: tuple[tuple[datetime, datetime], ...] = field(default=())

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        at = ctx.at
        for start, end in self.windows:  # noqa: SIM110  (a plain loop: see AllOf)
            if start <= at < end:
                return True
        return False


MEDIA_TYPES = frozenset({"image", "video"})
MAX_HASH_EVIDENCE = 8  # matching frames reported per rule; a long video could match in hundreds


@dataclass(frozen=True, slots=True, eq=False)
class MediaHashNear:
    """An image/video event has a `media.pdq` hash (any frame) within a bank's Hamming distance.

    Evidence per matching frame (nearest bank hash): field `media.pdq[i]`, 0..64, "<label> d=<n>".
    """

    banks: tuple[HashBank, ...]

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        event = ctx.event
        if event.type not in MEDIA_TYPES or event.media is None or not event.media.pdq:
            return False
        nearest: dict[int, HashMatch] = {}
        for bank in self.banks:
            for match in bank.search_hex(event.media.pdq):
                known = nearest.get(match.frame)
                if known is None or match.distance < known.distance:
                    nearest[match.frame] = match
        for frame in sorted(nearest)[:MAX_HASH_EVIDENCE]:
            match = nearest[frame]
            evidence.append(Evidence(f"media.pdq[{frame}]", 0, 64, f"{match.label} d={match.distance}"))
        return bool(nearest)
