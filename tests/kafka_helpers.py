"""Helpers of the stream tests: the broker a test runs on, per-test topic names, a producer and
reader, `redline serve` processes."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from service.events import decode_verdict
from service.runtime import Runtime
from service.sample_traffic import SampleRecord
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StreamBroker:
    """The broker a stream test runs on (the `broker` fixture, tests/conftest.py), and the delivery
    Redline is set to there: tansu has no transactions, so it runs at_least_once only."""

    kind: str  # "tansu" | "apache-kafka"
    bootstrap: str
    delivery: str  # "at_least_once" | "exactly_once"

    @property
    def exactly_once(self) -> bool:
        return self.delivery == "exactly_once"

    @property
    def isolation_level(self) -> str:
        """How the tests read what Redline wrote: as a downstream consumer of exactly-once output
        must (read_committed); tansu's fetches are read as they always were."""
        return "read_committed" if self.kind == "apache-kafka" else "read_uncommitted"

    def __str__(self) -> str:
        return f"{self.kind}/{self.delivery}"


# What the helpers below take: a test's broker, or a bare bootstrap string (read uncommitted).
Target = StreamBroker | str


def _bootstrap(target: Target) -> str:
    return target.bootstrap if isinstance(target, StreamBroker) else target


def _isolation(target: Target) -> str:
    return target.isolation_level if isinstance(target, StreamBroker) else "read_uncommitted"


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

    def env(self, broker: Target, http_port: int, **extra: str) -> dict[str, str]:
        """`serve`'s environment. One stream process unless a test asks for members: these tests
        follow one consumer's log lines (test_stream_members.py covers member processes)."""
        delivery = {"REDLINE_DELIVERY": broker.delivery} if isinstance(broker, StreamBroker) else {}
        return {
            **delivery, "REDLINE_KAFKA_BOOTSTRAP": _bootstrap(broker), "REDLINE_INPUT_TOPIC": self.input,
            "REDLINE_OUTPUT_TOPIC": self.output, "REDLINE_DLQ_TOPIC": self.dlq,
            "REDLINE_GROUP_ID": self.group, "REDLINE_HTTP_HOST": "127.0.0.1",
            "REDLINE_HTTP_PORT": str(http_port), "REDLINE_RULES": str(rules_dir()),
            "REDLINE_SESSION_TIMEOUT_MS": "3000", "REDLINE_TOPIC_PARTITIONS": "4",
            "REDLINE_LOG_LEVEL": "INFO", "REDLINE_STREAM_PROCESSES": "1", **extra,
        }

    def settings(self, broker: Target, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "kafka_bootstrap": _bootstrap(broker), "input_topic": self.input, "output_topic": self.output,
            "dlq_topic": self.dlq, "group_id": self.group, "rules": rules_dir(),
            "session_timeout_ms": 3000, "topic_partitions": 4, "http_host": "127.0.0.1",
        }
        if isinstance(broker, StreamBroker):
            values["delivery"] = broker.delivery
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]



async def produce(target: Target, topic: str, records: list[SampleRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(target), linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=r.value, key=r.key) for r in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def topic_partitions(target: Target, topic: str, timeout_seconds: float = 15.0) -> list[TopicPartition]:
    """The topic's partitions, asked of the broker by name. (A consumer's `partitions_for_topic`
    knows only topics its client asked metadata for: tansu answers a request for no topic with all
    of them, Apache Kafka with none.) A topic just created may take a moment to be in the metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=_bootstrap(target))
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:
            described = await admin.describe_topics([topic])
            partitions = sorted(p["partition"] for t in described if t["topic"] == topic and not t["error_code"]
                                for p in t["partitions"])
            if partitions:
                return [TopicPartition(topic, p) for p in partitions]
            assert time.monotonic() < deadline, f"topic {topic} has no partitions in the metadata"
            await asyncio.sleep(0.1)  # metadata has no change notification to await
    finally:
        await admin.close()


async def read_topic(target: Target, topic: str, count: int, timeout_seconds: float = 60.0) -> list[object]:
    """Read from the beginning (no group) until `count` records arrived or the time is up."""
    found: list[object] = []

    def note(record: object) -> bool:
        found.append(record)
        return len(found) >= count

    if count > 0:
        await read_all(target, topic, note, timeout_seconds)
    return found


# exactly_once: a fault proves something only if it strikes an open transaction. With 100 ms
# transactions, each committed on time (and every queued batch produced at once), a kill often
# lands between two (0 aborted verdicts in a run); transactions held open for a second span most of
# the time records flow.
OPEN_TRANSACTIONS: Final = {"REDLINE_TRANSACTION_INTERVAL_MS": "1000"}


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

    # 120 s: a member compiles the default pack first (5-9 s alone on 2 cores, many times that
    # beside a broker and other members on a loaded machine); the bound only ends a failing test.
    def wait_for_log(self, text: str, timeout_seconds: float = 120.0) -> str:
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


async def produce_paced(target: Target, topic: str, records: list[SampleRecord], chunk: int = 500,
                        pause_seconds: float = 0.05) -> None:
    """Produce in chunks with a pause between them, so that a test can act while events still flow."""
    for start in range(0, len(records), chunk):
        await produce(target, topic, records[start:start + chunk])
        await asyncio.sleep(pause_seconds)


async def read_all(target: Target, topic: str, done: Callable[[Any], bool], timeout_seconds: float) -> None:
    """Feed every record of `topic`, from the beginning, to `done(record)` until it says True."""
    consumer = AIOKafkaConsumer(bootstrap_servers=_bootstrap(target), auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level=_isolation(target))
    await consumer.start()
    try:
        consumer.assign(await topic_partitions(target, topic))
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


async def read_verdicts(target: Target, topic: str, expected: set[str],
                        timeout_seconds: float = 90.0) -> dict[str, list[Any]]:
    """Every verdict record on `topic` by event id, read until each expected id was seen (or time is up)."""
    verdicts: dict[str, list[Any]] = defaultdict(list)

    def note(record: Any) -> bool:
        verdicts[decode_verdict(record.value).event_id].append(record)
        return expected <= verdicts.keys()

    if expected:
        await read_all(target, topic, note, timeout_seconds)
    return verdicts


async def read_verdict_ids(target: Target, topic: str, expected: set[str],
                           timeout_seconds: float = 90.0) -> list[str]:
    """Event ids of every verdict on `topic` (one per verdict), read as `read_verdicts` does."""
    verdicts = await read_verdicts(target, topic, expected, timeout_seconds)
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


async def read_to_end(target: Target, topic: str, timeout_seconds: float = 60.0,
                      isolation_level: str | None = None) -> list[Any]:
    """Every record of `topic` up to its end as the broker reports it on fetch (the last stable
    offset when read read_committed, else the high watermark; tansu's ListOffsets answers less than
    the end, so `end_offsets` is not used): what a downstream consumer would ever see, duplicates
    included. Call it once the writers stopped."""
    isolation = isolation_level or _isolation(target)
    read_committed = isolation == "read_committed"
    consumer = AIOKafkaConsumer(bootstrap_servers=_bootstrap(target), auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level=isolation)
    await consumer.start()
    try:
        partitions = await topic_partitions(target, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        found: list[Any] = []
        pending = set(partitions)
        deadline = time.monotonic() + timeout_seconds
        while pending:
            assert time.monotonic() < deadline, f"{topic}: {sorted(tp.partition for tp in pending)} not read to the end"
            for records in (await consumer.getmany(*pending, timeout_ms=200, max_records=10_000)).values():
                found.extend(records)
            for tp in list(pending):
                end = consumer.last_stable_offset(tp) if read_committed else consumer.highwater(tp)
                if end is not None and await consumer.position(tp) >= end:
                    pending.discard(tp)
        return found
    finally:
        await consumer.stop()


async def aborted_records(broker: StreamBroker, topic: str) -> int:
    """Records of `topic` that aborted transactions wrote: in the log, never read read_committed.
    A fault test under exactly_once checks there were some: the fault did strike mid-transaction."""
    written = await read_to_end(broker, topic, isolation_level="read_uncommitted")
    return len(written) - len(await read_to_end(broker, topic))


async def stable_ends(broker: StreamBroker, topic: str) -> dict[int, tuple[int, int]]:
    """Per partition of `topic`: (last stable offset, high watermark). Records between the two were
    written by transactions still open."""
    partitions = await topic_partitions(broker, topic)
    found: dict[str, dict[TopicPartition, int]] = {}
    for isolation in ("read_committed", "read_uncommitted"):  # end_offsets: the LSO, the high watermark
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            found[isolation] = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
    return {tp.partition: (found["read_committed"][tp], found["read_uncommitted"][tp]) for tp in partitions}


async def explain_missing(broker: StreamBroker, topics: Any, missing: set[str]) -> str:
    """Where verdicts a reader did not find are, for a failure message: written but not readable
    read_committed (an open or aborted transaction), or never written; and per partition the
    output's last stable offset and high watermark and the group's committed input offsets."""
    written = {decode_verdict(r.value).event_id: r for r in
               await read_to_end(broker, topics.output, isolation_level="read_uncommitted")}
    in_log = sorted(missing & written.keys())
    lines = [f"{len(missing)} without a verdict read {broker.isolation_level}; {len(in_log)} of them in the log "
             f"read_uncommitted (output partitions {sorted({written[i].partition for i in in_log})}, "
             f"offsets {[written[i].offset for i in in_log[:5]]}…)"]
    lines += [f"output {partition}: last stable offset {stable}, high watermark {high}"
              for partition, (stable, high) in sorted((await stable_ends(broker, topics.output)).items())]
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=topics.group)
    await consumer.start()
    try:
        inputs = await topic_partitions(broker, topics.input)
        ends = await consumer.end_offsets(inputs)
        lines += [f"input {tp.partition}: committed {await consumer.committed(tp)}, end {ends[tp]}" for tp in inputs]
    finally:
        await consumer.stop()
    return "\n".join(lines)


async def freeze_in_open_transaction(pid: int, broker: StreamBroker, output: str, partitions: list[int]) -> int:
    """SIGSTOP process `pid` (a stream member under exactly_once) while records of its open
    transactions are in the log, so that a fault striking it now proves something; returns how many.
    A verdict goes to the output partition of its event's input partition (same key, partitioner and
    count), so the output partitions of the member's input `partitions` are written by it alone:
    records past their last stable offset are its open transactions'. When there are none it is
    thawed at once (well within its session) and frozen again a moment later."""
    for _ in range(50):
        os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(0.3)  # a commit it sent before the stop completes meanwhile
        open_records = await _open_records(broker, output, partitions)
        if open_records:
            # On a loaded machine a commit can take longer than that (one CI run killed a member
            # whose commit then completed: 0 aborted). The stopped member writes nothing, so
            # records still open a moment later are a transaction it has not committed.
            await asyncio.sleep(0.5)
            if await _open_records(broker, output, partitions) == open_records:
                return open_records
        os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(0.2)
    raise AssertionError("never froze with records of an open transaction in the log")


async def _open_records(broker: StreamBroker, output: str, partitions: list[int]) -> int:
    """Records of `output`'s `partitions` past their last stable offset: open transactions'."""
    ends = await stable_ends(broker, output)
    return sum(high - stable for partition, (stable, high) in ends.items() if partition in partitions)


async def fence(bootstrap: str, transactional_id: str) -> None:
    """What a partition's next owner does first: InitProducerId with the partition's transactional
    id, which aborts the open transaction and fences the producer that held the id."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
    await producer.start()
    await producer.stop()
