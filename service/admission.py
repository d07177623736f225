"""What every door checks on a decoded event before the engine sees it, the same way everywhere.

The engine's cost grows linearly with an event's size (tests/engine/test_linear_cost.py); these
limits put a ceiling on that size, so one event's cost has a ceiling too. An event over a limit
is refused like any other invalid event: HTTP answers 422 naming the field's JSON path, `redline
check` writes an error line to stderr, the stream dead-letters the record (`too_large`), never
scanning part of it (an evader would put the payload past the cut).

A `sent_at` with an offset that carries it past year 9999 or before year 1 in UTC is refused too:
it is valid RFC 3339 but no clock can read it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from service.errors import EventDecodeError
from service.events import (
    AdHocEvent,
    ChatEvent,
    decode_adhoc_event_noting,
    decode_event_noting,
    unknown_field_paths,
)
from service.settings import Settings

_EDGE_YEARS: Final = (datetime.min.year, datetime.max.year)


@dataclass(frozen=True, slots=True)
class EventLimits:
    max_text_chars: int  # text, file.name, link.url
    max_media_hashes: int  # media.pdq: one per video frame

    @classmethod
    def from_settings(cls, settings: Settings) -> EventLimits:
        return cls(settings.max_text_chars, settings.max_media_hashes)


@dataclass(frozen=True, slots=True)
class Refusal:
    path: str  # JSON path of the field, from the event's root
    message: str

    def at(self, root: str) -> Refusal:
        """The same refusal with `$` re-rooted (`$[3]` for a batch item, `$.event` for a form part)."""
        return Refusal(root + self.path[1:], self.message)


def refusal(event: ChatEvent | AdHocEvent, limits: EventLimits) -> Refusal | None:
    """Why the event must not be classified, or None. Cheap: a few length reads per event."""
    limit = limits.max_text_chars
    if len(event.text) > limit:
        return Refusal("$.text", f"Expected `str` of length <= {limit}")
    if event.file is not None and len(event.file.name) > limit:
        return Refusal("$.file.name", f"Expected `str` of length <= {limit}")
    if event.link is not None and len(event.link.url) > limit:
        return Refusal("$.link.url", f"Expected `str` of length <= {limit}")
    if event.media is not None and len(event.media.pdq) > limits.max_media_hashes:
        return Refusal("$.media.pdq", f"Expected `array` of length <= {limits.max_media_hashes}")
    sent_at = event.sent_at
    if sent_at is not None and sent_at.year in _EDGE_YEARS:
        try:
            sent_at.astimezone(UTC)
        except OverflowError:
            return Refusal("$.sent_at", "timestamp out of range once converted to UTC")
    return None


def decode_checkable(data: bytes, limits: EventLimits) -> tuple[ChatEvent, list[str]]:
    """One event as `POST /check` takes it (`id` optional: a UUID is given), with the JSON paths
    of its fields the contract does not know; EventDecodeError (its message ends with the field's
    path, as msgspec's do) when it is no event or over a limit."""
    try:
        event, unknown = decode_event_noting(data)
    except EventDecodeError:
        adhoc, unknown = decode_adhoc_event_noting(data)  # raises the precise error: no event at all
        event = adhoc.with_id(adhoc.id if adhoc.id is not None else str(uuid.uuid4()))
    found = refusal(event, limits)
    if found is not None:
        raise EventDecodeError(f"{found.message} - at `{found.path}`")
    return event, unknown_field_paths(data) if unknown else []
