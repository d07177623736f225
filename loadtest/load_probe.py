"""What the load tools watch while they run: a consumer group's committed offsets, a process's CPU and
RSS from /proc, and Redline's own lag gauge from /metrics.

Lag is taken as *input high watermark − committed offset* of the group, summed over partitions: the
operator's view (what `kafka-consumer-groups` or Burrow report), independent of what the service
says about itself, and it counts records consumed but not yet committed as still owed (they are,
under at-least-once). The high watermark is the generator's count of acknowledged records, exact
because it is the topic's only producer; tansu's ListOffsets would answer the base offset of the
last batch instead (docs/stream.md). `redline_stream_consumer_lag_records` is sampled beside it as a
cross-check: it is the service's own view (its last fetch's high watermark − what it has
*consumed*), updated per batch, so it reads lower than the committed lag by the batches in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (a service may run worker processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError, ValueError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


def tree_rss_bytes(pid: int) -> int | None:
    """RSS summed over the process tree (pages shared between them count once per process)."""
    sizes = [size for p in process_tree(pid) if (size := rss_bytes(p)) is not None]
    return sum(sizes) if sizes else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (children not included)."""
    try:
        # The command name may hold spaces: the fields after the closing parenthesis are fixed.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def available_memory_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


class CpuMeter:
    """CPU share of one process between two reads (1.0 = one core busy)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._last = self._read()

    def _read(self) -> tuple[float, float] | None:
        if self.pid is None:
            return time.monotonic(), time.process_time()  # this process: the generator, the probes
        found = [used for p in process_tree(self.pid) if (used := cpu_seconds(p)) is not None]
        return (time.monotonic(), sum(found)) if found else None

    def share(self) -> float | None:
        now, last = self._read(), self._last
        self._last = now
        if now is None or last is None or now[0] <= last[0]:
            return None
        # A worker that exited takes its CPU time out of the sum: never report less than nothing.
        return max(0.0, (now[1] - last[1]) / (now[0] - last[0]))


class GroupProgress:
    """Polls the committed offsets of one consumer group (OffsetFetch; the poller never joins it)."""

    def __init__(self, bootstrap: str, topic: str, group: str, partitions: int) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.committed: dict[int, int] = {p: 0 for p in range(partitions)}
        self._task: asyncio.Task[None] | None = None

    @property
    def total(self) -> int:
        return sum(self.committed.values())

    async def start(self, interval_seconds: float = 0.25) -> None:
        await self._consumer.start()
        await self.poll()
        self._task = asyncio.create_task(self._loop(interval_seconds))

    async def poll(self) -> None:
        offsets = await asyncio.gather(*(self._consumer.committed(tp) for tp in self._partitions))
        for tp, offset in zip(self._partitions, offsets, strict=True):
            self.committed[tp.partition] = max(self.committed[tp.partition], offset or 0)

    async def _loop(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)  # polling the group from outside: no event to await
            with contextlib.suppress(KafkaError):
                await self.poll()

    async def wait_for(self, count: int, timeout_seconds: float) -> bool:
        deadline = time.monotonic() + timeout_seconds
        while self.total < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)  # the poll task updates `committed`
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def lag_gauge(client: httpx.AsyncClient, url: str) -> int | None:
    """Sum of `redline_stream_consumer_lag_records` over partitions, from the service's /metrics."""
    try:
        text = (await client.get(url, timeout=2)).text
    except httpx.HTTPError:
        return None
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith("redline_stream_consumer_lag_records{"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return int(total) if seen else None


@dataclass
class Sample:
    t_seconds: float  # since the target's warm-up ended
    phase: str
    produced: int  # records appended by the generator
    acked: int  # records the broker acknowledged = input high watermark
    committed: int  # the group's committed offsets, summed over partitions
    lag_records: int  # acked − committed
    lag_gauge_records: int | None  # Redline's own gauge (None for the baseline)
    target_cpu: float | None  # cores used by the consumer measured (its process tree)
    target_rss_mib: float | None  # the consumer's main process
    target_tree_rss_mib: float | None  # summed over its process tree (= main process without workers)
    broker_cpu: float | None
    broker_rss_mib: float | None
    generator_cpu: float | None  # this process: generator, probes
