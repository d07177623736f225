"""Helpers of the stream tests: per-test topic names, a producer and reader, `redline serve` processes."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from service.events import decode_verdict
from service.runtime import Runtime
from service.sample_traffic import SampleRecord
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def ready(runtime: Runtime) -> bool:
    """What `/readyz` would answer for the in-process runtime."""
    return runtime.readiness.state()[0]


def rules_dir() -> Path:
    """The small engine-test pack: the stream's behaviour does not depend on the pack, and it
    compiles in a fraction of a second in every subprocess (loadtest/ runs the default pack)."""
    return REPO / "tests" / "packs" / "mini"


@dataclass(frozen=True)
class Topics:
    input: str
    output: str
    dlq: str
    group: str

    def env(self, bootstrap: str, http_port: int, **extra: str) -> dict[str, str]:
        """`serve`'s environment. One stream process unless a test asks for members: these tests
        follow one consumer's log lines (test_stream_members.py covers member processes)."""
        return {
            "REDLINE_KAFKA_BOOTSTRAP": bootstrap, "REDLINE_INPUT_TOPIC": self.input,
            "REDLINE_OUTPUT_TOPIC": self.output, "REDLINE_DLQ_TOPIC": self.dlq,
            "REDLINE_GROUP_ID": self.group, "REDLINE_HTTP_HOST": "127.0.0.1",
            "REDLINE_HTTP_PORT": str(http_port), "REDLINE_RULES": str(rules_dir()),
            "REDLINE_SESSION_TIMEOUT_MS": "3000", "REDLINE_TOPIC_PARTITIONS": "4",
            "REDLINE_LOG_LEVEL": "INFO", "REDLINE_STREAM_PROCESSES": "1", **extra,
        }

    def settings(self, bootstrap: str, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "kafka_bootstrap": bootstrap, "input_topic": self.input, "output_topic": self.output,
            "dlq_topic": self.dlq, "group_id": self.group, "rules": rules_dir(),
            "session_timeout_ms": 3000, "topic_partitions": 4, "http_host": "127.0.0.1",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]



async def produce(bootstrap: str, topic: str, records: list[SampleRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=r.value, key=r.key) for r in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, count: int, timeout_seconds: float = 60.0) -> list[object]:
    """Read from the beginning (no group) until `count` records arrived or the time is up."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # refreshes the metadata that partitions_for_topic reads
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        found: list[object] = []
        deadline = time.monotonic() + timeout_seconds
        while len(found) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                found.extend(records)
        return found
    finally:
        await consumer.stop()


@dataclass
class ServiceProcess:
    """`python -m service serve` in a subprocess, with its JSON log lines readable as they come."""

    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    log: list[str] = field(default_factory=list)

    def start(self) -> ServiceProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"], cwd=REPO,
            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        stderr = self.process.stderr
        assert stderr is not None

        def pump() -> None:
            for line in stderr:
                self.lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        return self

    def wait_for_log(self, text: str, timeout_seconds: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no log line with {text!r} in {timeout_seconds}s:\n" + "".join(self.log))
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.log.append(line)
            if text in line:
                return line

    def log_tail(self, lines: int = 40) -> str:
        """The last log lines, those the test has not read yet included: for assertion messages."""
        while not self.lines.empty():
            self.log.append(self.lines.get())
        return "".join(self.log[-lines:])

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_seconds: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout_seconds)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def produce_paced(bootstrap: str, topic: str, records: list[SampleRecord], chunk: int = 500,
                        pause_seconds: float = 0.05) -> None:
    """Produce in chunks with a pause between them, so that a test can act while events still flow."""
    for start in range(0, len(records), chunk):
        await produce(bootstrap, topic, records[start:start + chunk])
        await asyncio.sleep(pause_seconds)


async def read_all(bootstrap: str, topic: str, done: Callable[[Any], bool], timeout_seconds: float) -> None:
    """Feed every record of `topic`, from the beginning, to `done(record)` until it says True."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_seconds
        finished = False
        while not finished and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                for record in records:
                    finished = done(record) or finished
    finally:
        await consumer.stop()


async def read_verdicts(bootstrap: str, topic: str, expected: set[str],
                        timeout_seconds: float = 90.0) -> dict[str, list[Any]]:
    """Every verdict record on `topic` by event id, read until each expected id was seen (or time is up)."""
    verdicts: dict[str, list[Any]] = defaultdict(list)

    def note(record: Any) -> bool:
        verdicts[decode_verdict(record.value).event_id].append(record)
        return expected <= verdicts.keys()

    if expected:
        await read_all(bootstrap, topic, note, timeout_seconds)
    return verdicts


async def read_verdict_ids(bootstrap: str, topic: str, expected: set[str],
                           timeout_seconds: float = 90.0) -> list[str]:
    """Event ids of every verdict on `topic` (one per verdict), read as `read_verdicts` does."""
    verdicts = await read_verdicts(bootstrap, topic, expected, timeout_seconds)
    return [event_id for event_id, found in verdicts.items() for _ in found]


def children_of(pid: int) -> list[int]:
    """The child processes of `pid` (stream members, the image hasher)."""
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def assignment_of(line: str) -> list[int]:
    partitions: list[int] = json.loads(line)["partitions"]
    return partitions


# The `start_service` fixture's type (conftest.py).
StartService = Callable[[dict[str, str]], ServiceProcess]
# A stream consumer's assignment log line; not the counter owner's "counter partitions assigned".
STREAM_ASSIGNED = '"msg": "partitions assigned"'
