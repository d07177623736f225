"""`merged`: many small outboxes produced as one keep every topic's and partition's order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.kafka.dead_letters import DeadLetter
from service.kafka.publisher import Outbox, merged
from service.kafka.records import Item

TOPICS = ("verdicts", "counts")


def _item(n: int) -> Item:
    return (str(n % 5).encode(), str(n).encode(), [])


@st.composite
def outboxes(draw: st.DrawFn) -> list[Outbox]:
    counter = iter(range(10**6))
    boxes = []
    for _ in range(draw(st.integers(1, 6))):
        box = Outbox()
        for topic in draw(st.lists(st.sampled_from(TOPICS), max_size=2, unique=True)):
            box.keyed.append((topic, [_item(next(counter)) for _ in range(draw(st.integers(0, 4)))]))
        for partition in draw(st.lists(st.integers(0, 2), max_size=2, unique=True)):
            box.placed.append(("forwards", partition, [_item(next(counter)) for _ in range(draw(st.integers(0, 3)))]))
        for _ in range(draw(st.integers(0, 2))):
            n = next(counter)
            box.dead_letters.append(DeadLetter(b"k", str(n).encode(), [], "invalid_event", n % 3))
        boxes.append(box)
    return boxes


def _streams(boxes: list[Outbox]) -> dict[object, list[Item]]:
    """What each destination receives, in order, when the boxes are published one after another."""
    out: dict[object, list[Item]] = {}
    for box in boxes:
        for topic, items in box.keyed:
            out.setdefault(("keyed", topic), []).extend(items)
        for topic, partition, items in box.placed:
            out.setdefault(("placed", topic, partition), []).extend(items)
        for letter in box.dead_letters:
            out.setdefault(("dead", letter.source_partition), []).append((letter.key, letter.value, []))
    return {where: items for where, items in out.items() if items}


@given(outboxes())
def test_merged_sends_each_destination_the_same_records_in_the_same_order(boxes: list[Outbox]) -> None:
    one = merged(boxes)
    assert _streams([one]) == _streams(boxes)
    # One entry per destination: one batch per output partition, not one per outbox.
    assert len({topic for topic, _ in one.keyed}) == len(one.keyed)
    assert len({(topic, partition) for topic, partition, _ in one.placed}) == len(one.placed)
