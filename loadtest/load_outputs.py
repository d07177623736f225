"""Reads a load run's output topic between phases: which events have an output record, and when.

"Drained" means every event produced has an output record, not merely that the input group has
committed: Redline commits an event once its verdict *or its counter request* is acknowledged, and
the verdicts of counted events come later from the counter owners (`<group>.counters`,
docs/counters.md). Reading happens only while no phase runs, so it takes no CPU from a
measurement; positions carry over, so each drain reads just the new records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

_MIB = 1024 * 1024


class OutputReader:
    def __init__(self, bootstrap: str, topic: str, partitions: int, decode: Callable[[bytes], int | None]) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                          auto_offset_reset="earliest", max_partition_fetch_bytes=8 * _MIB)
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._decode = decode
        self.sequences: array[int] = array("q")
        self.stamps_ms: array[int] = array("q")
        self.unparsed = 0
        self._seen = bytearray()  # one flag per sequence number
        self.unique = 0

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)

    def _take(self, value: bytes, timestamp_ms: int) -> None:
        sequence = self._decode(value)
        if sequence is None:
            self.unparsed += 1
            return
        self.sequences.append(sequence)
        self.stamps_ms.append(timestamp_ms)
        if sequence >= len(self._seen):
            self._seen.extend(bytes(sequence + 1 - len(self._seen) + 65_536))
        if not self._seen[sequence]:
            self._seen[sequence] = 1
            self.unique += 1

    async def read_until(self, events: int, timeout_seconds: float) -> bool:
        """Read until every sequence number below `events` has an output (False on timeout)."""
        deadline = time.monotonic() + timeout_seconds
        while self.unique < events:
            if time.monotonic() > deadline:
                return False
            batch = await self._consumer.getmany(timeout_ms=200, max_records=20_000)
            for records in batch.values():
                for record in records:
                    self._take(record.value, record.timestamp)
            await asyncio.sleep(0)
        return True

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._consumer.stop()
