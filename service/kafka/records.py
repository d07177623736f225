"""What the loops read of a consumed record, and what they produce."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition

# A record to produce: key, value, headers (a list: aiokafka's batch builder takes no other sequence).
Item = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
# One `getmany` result: records per partition, in offset order (aiokafka's ConsumerRecords).
Batch = dict[TopicPartition, list[Any]]


class SourceRecord(Protocol):
    """What is read of a consumed record (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def next_offsets(batch: Batch) -> dict[TopicPartition, int]:
    """The offsets to commit once the batch is done: the next one per partition."""
    return {tp: records[-1].offset + 1 for tp, records in batch.items()}
