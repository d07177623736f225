"""How the doors cut events into engine batches: consecutive events, bounded by scanned characters.

One engine batch call (`Engine.evaluate_batch`, `classify_batch`) holds the thread it runs on for
its whole cost, which grows with the characters it scans (~0.15 µs each for ordinary chat, up to
~2 µs each for the costliest hostile text) and hardly with anything else. So a door cuts what it
holds into slices of at most `max_chars` scanned characters and gives its loop back (or writes its
output) between them; an event longer than that is a slice of its own, so a 1 MiB text delays the
events after it by its own cost only. The count of events per call is bounded by what the door
holds at once: a stream fetch (`REDLINE_BATCH_MAX_RECORDS`), a `/check/batch` body
(`max_batch_events`), a chunk of `redline check` or `redline replay` input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from service.events import ChatEvent

# Scanned characters per engine batch call where a door has no reason to choose otherwise (the
# stream, `redline check`, `redline replay`): ~15 ms of ordinary chat; of the costliest hostile
# text ~0.4 s (docs/reliability.md, measured with the learned model) between two yields.
SLICE_CHARS: Final = 64 * 1024

# What a door's loop gets back after a slice (`give_back`). One iteration (`sleep(0)`) lets a
# task whose timer fell due send its request, not read the answer: behind slices of hostile text
# (one 64 Ki event: ~0.4 s, over 1 s on a loaded 2-core machine) a consumer heartbeat took three
# slices, and the broker expired the member (a suite run on a slow machine: 7 assignments in
# one heavy fetch). After a long slice the loop runs for a short pause instead, a small share of
# the slice's time, in which loopback round trips complete; after a short one (ordinary chat)
# `sleep(0)` stays.
LONG_SLICE_SECONDS: Final = 0.05
PAUSE_SHARE: Final = 0.05
MAX_PAUSE_SECONDS: Final = 0.05


async def give_back(held_seconds: float) -> None:
    """Give the loop back after a slice that held it `held_seconds`: one iteration after a short
    slice, a pause of PAUSE_SHARE of it (at most MAX_PAUSE_SECONDS) after a long one."""
    if held_seconds < LONG_SLICE_SECONDS:
        await asyncio.sleep(0)
    else:
        await asyncio.sleep(min(MAX_PAUSE_SECONDS, held_seconds * PAUSE_SHARE))


def scanned_chars(event: ChatEvent) -> int:
    """The characters of an event the engine scans (its cost grows linearly with them)."""
    chars = len(event.text)
    if event.file is not None:
        chars += len(event.file.name)
    if event.link is not None:
        chars += len(event.link.url)
    return chars


def slices_by_chars(events: Sequence[ChatEvent], max_chars: int) -> list[range]:
    """Consecutive ranges of `events` of at most `max_chars` scanned characters each (an event
    with more is a range of its own); one empty range for no events."""
    out: list[range] = []
    first = 0
    chars = 0
    for index, event in enumerate(events):
        size = scanned_chars(event)
        if index > first and chars + size > max_chars:
            out.append(range(first, index))
            first, chars = index, 0
        chars += size
    out.append(range(first, len(events)))
    return out
