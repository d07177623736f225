"""Mixed group-chat traffic produced to Kafka at a fixed rate (open loop) or flat out.

The events come from `service.sample_traffic` (Chinese and English chatter and risky texts,
red packets and transfers, files, links, forwards with share/view counts, images and videos with
PDQ hashes). A pool of them is encoded once; each record sent is a pool entry with a fresh id and
`sent_at` spliced in, so producing costs the generator little CPU next to the service it loads.

Fixed rate: record i of a phase is *scheduled* at `start + i / rate` and carries that instant as its
Kafka timestamp (CreateTime), whether or not the generator kept up; latency measured from it
includes any generator or broker stall (no coordinated omission). Flat out: records are produced
as fast as the broker takes them while the consumer group's backlog stays under a cap, so the
consumer never waits for input and the broker's memory does not grow without bound; their
timestamp is the moment they are appended.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from service.sample_traffic import SampleTraffic

_ID_MARK = "@@redline-load-id@@"
_TS_MARK = "@@redline-load-sent-at@@"
TICK_SECONDS = 0.005  # pacing granularity of the fixed-rate generator


class _IdOnly(msgspec.Struct):
    id: str


class _VerdictIdOnly(msgspec.Struct):
    event_id: str


_decode_event_id = msgspec.json.Decoder(_IdOnly).decode
_decode_verdict_id = msgspec.json.Decoder(_VerdictIdOnly).decode


@dataclass(frozen=True, slots=True)
class _Template:
    key: bytes
    partition: int
    head: bytes  # ... "id":"
    middle: bytes  # ","type":...,"sent_at":"
    tail: bytes  # ",...}


class EventPool:
    """`size` distinct sample events, encoded once, with ids `<run>-<sequence>`."""

    def __init__(self, size: int, partitions: int, seed: int = 11, chats: int = 1000) -> None:
        self.run = uuid.uuid4().hex[:8]
        # 1,000 chats spread keys evenly over the partitions (as loadtest.stream_bench does).
        traffic = SampleTraffic(seed, chats=chats, malformed_ratio=0.0)
        partitioner = DefaultPartitioner()
        every = list(range(partitions))
        self.templates: list[_Template] = []
        self.kinds: dict[str, int] = {}
        for _ in range(size):
            event = traffic.event()
            kind = "forward" if "forward" in event else str(event["type"])
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            event["id"], event["sent_at"] = _ID_MARK, _TS_MARK
            value = msgspec.json.encode(event)
            head, rest = value.split(_ID_MARK.encode())
            middle, tail = rest.split(_TS_MARK.encode())
            chat = event["chat"]
            assert isinstance(chat, dict)
            key = str(chat["id"]).encode()
            self.templates.append(_Template(key, partitioner(key, every, every), head, middle, tail))

    def record(self, sequence: int, sent_at: bytes) -> tuple[int, bytes, bytes]:
        """(partition, key, value) of the event with this sequence number."""
        t = self.templates[sequence % len(self.templates)]
        return t.partition, t.key, b"".join((t.head, f"{self.run}-{sequence}".encode(), t.middle, sent_at, t.tail))

    def sequence_of(self, value: bytes, verdict: bool) -> int | None:
        """The sequence number of an output record (a verdict, or an event passed through)."""
        try:
            event_id = _decode_verdict_id(value).event_id if verdict else _decode_event_id(value).id
        except msgspec.DecodeError:
            return None
        run, _, sequence = event_id.rpartition("-")
        return int(sequence) if run == self.run and sequence.isdigit() else None


@dataclass
class Produced:
    """What the generator did; `acked` per partition equals the input high watermark (sole producer)."""

    sent: int = 0
    acked: dict[int, int] = field(default_factory=dict)
    scheduled_ms: array[float] = field(default_factory=lambda: array("d"))  # per sequence: its timestamp
    behind_max_seconds: float = 0.0  # worst delay of a fixed-rate tick behind its schedule

    @property
    def acked_total(self) -> int:
        return sum(self.acked.values())


class Generator:
    def __init__(self, producer: AIOKafkaProducer, topic: str, pool: EventPool, record_schedule: bool = True) -> None:
        self.producer = producer
        self.record_schedule = record_schedule
        self.topic = topic
        self.pool = pool
        self.produced = Produced(acked={t.partition: 0 for t in pool.templates})
        self._pending: set[asyncio.Future[Any]] = set()

    async def _send(self, count: int, first_ms: float, step_ms: float = 0.0) -> None:
        """Append `count` records (sequence numbers continue) stamped `first_ms + i * step_ms`."""
        produced = self.produced
        sent_at = datetime.now(UTC).isoformat().encode()  # one instant per tick: cheap and realistic
        builders: dict[int, Any] = {}
        counts: dict[int, int] = {}
        for i in range(count):
            sequence = produced.sent + i
            timestamp_ms = first_ms + i * step_ms
            if self.record_schedule:
                produced.scheduled_ms.append(timestamp_ms)
            partition, key, value = self.pool.record(sequence, sent_at)
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = self.producer.create_batch()
            if builder.append(key=key, value=value, timestamp=int(timestamp_ms)) is None:
                await self._submit(builder, partition, counts.pop(partition))
                builder = builders[partition] = self.producer.create_batch()
                builder.append(key=key, value=value, timestamp=int(timestamp_ms))
            counts[partition] = counts.get(partition, 0) + 1
        produced.sent += count
        for partition, builder in builders.items():
            await self._submit(builder, partition, counts[partition])

    async def _submit(self, builder: Any, partition: int, count: int) -> None:
        future: asyncio.Future[Any] = await self.producer.send_batch(builder, self.topic, partition=partition)
        self._pending.add(future)

        def acked(done: asyncio.Future[Any]) -> None:
            self._pending.discard(done)
            if not done.cancelled() and done.exception() is None:
                self.produced.acked[partition] += count

        future.add_done_callback(acked)

    async def fixed_rate(self, rate: float, seconds: float) -> None:
        start_wall = time.time()
        start = time.perf_counter()
        first = self.produced.sent
        total = int(rate * seconds)
        done = 0
        while done < total:
            elapsed = time.perf_counter() - start
            owed = min(total, int(rate * elapsed) + 1) - done
            if owed > 0:
                self.produced.behind_max_seconds = max(self.produced.behind_max_seconds, elapsed - done / rate)
                await self._send(owed, (start_wall + done / rate) * 1000, 1000 / rate)
                done += owed
            await asyncio.sleep(TICK_SECONDS)  # pacing: the schedule, not the broker, sets the rate
        assert self.produced.sent - first == total

    async def flat_out(self, seconds: float, backlog_cap: int, committed: Callable[[], int],
                       chunk: int = 2000) -> None:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            room = min(chunk, backlog_cap - (self.produced.sent - committed()))
            if room <= 0:
                await asyncio.sleep(TICK_SECONDS)  # the consumer has enough queued: wait for its commits
                continue
            await self._send(room, time.time() * 1000)
            await asyncio.sleep(0)

    async def burst(self, count: int) -> None:
        await self._send(count, time.time() * 1000)

    async def flush(self) -> None:
        await self.producer.flush()
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
