"""How the doors cut events into engine batches (service.batches): a long event is a slice of its
own, so the events around it are never decided in the same engine call as it and wait for its
cost only; every other slice holds at most `max_chars` scanned characters."""

from __future__ import annotations

import asyncio
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from service.batches import MAX_PAUSE_SECONDS, give_back, scanned_chars, slices_by_chars
from service.events import ChatEvent, File, Link

MIB = 1024 * 1024


def _event(index: int, chars: int) -> ChatEvent:
    return ChatEvent(id=str(index), text="x" * chars)


def test_a_huge_text_is_a_slice_of_its_own() -> None:
    events = [_event(i, 100) for i in range(5)] + [_event(5, MIB)] + [_event(i, 100) for i in range(6, 12)]
    slices = slices_by_chars(events, 64 * 1024)
    assert slices == [range(0, 5), range(5, 6), range(6, 12)]


def test_slices_are_bounded_by_scanned_characters() -> None:
    events = [_event(i, 30) for i in range(10)]
    assert slices_by_chars(events, 100) == [range(0, 3), range(3, 6), range(6, 9), range(9, 10)]
    assert slices_by_chars(events, 300) == [range(0, 10)]
    assert slices_by_chars([], 100) == [range(0, 0)]


def test_file_names_and_links_are_scanned_characters() -> None:
    event = ChatEvent(id="f", text="abc", file=File(name="report.docx", size=1), link=Link(url="https://x.example/"))
    assert scanned_chars(event) == 3 + len("report.docx") + len("https://x.example/")
    assert slices_by_chars([event, event], 2 * scanned_chars(event) - 1) == [range(0, 1), range(1, 2)]


@given(sizes=st.lists(st.integers(0, 5000), max_size=60), limit=st.integers(1, 8000))
def test_slices_cover_the_events_in_order_within_the_bound(sizes: list[int], limit: int) -> None:
    events = [_event(i, size) for i, size in enumerate(sizes)]
    slices = slices_by_chars(events, limit)
    assert [i for part in slices for i in part] == list(range(len(events)))
    for part in slices:
        chars = sum(sizes[i] for i in part)
        assert len(part) == 1 or chars <= limit, (part, chars)
    # Greedy: a slice ends only where the next event would have taken it over the bound.
    for part, following in pairwise(slices):
        assert sum(sizes[i] for i in part) + sizes[following.start] > limit


async def test_after_a_long_slice_the_loop_completes_a_loopback_round_trip() -> None:
    # What a consumer heartbeat needs between two slices of hostile text: its request sent and the
    # answer read. One iteration (`sleep(0)`) sends it only; the pause after a long slice does both.
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def round_trip() -> bytes:
        writer.write(b"beat")
        return await reader.readexactly(4)

    try:
        answered = asyncio.get_running_loop().create_task(round_trip())
        await give_back(held_seconds=1.0)  # a slice that held the loop a second
        assert answered.done() and answered.result() == b"beat"
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def test_the_pause_after_a_slice_is_bounded() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await give_back(held_seconds=3600.0)
    assert loop.time() - started < MAX_PAUSE_SECONDS + 1.0  # a share of the slice, capped
