"""Stream throughput and latency: `redline serve` against two pass-through baselines, same run, same topic.

    .venv/bin/python -m loadtest.stream_bench                 # 3 runs x 200k events (~3 min)
    .venv/bin/python -m loadtest.stream_bench --events 50000 --runs 1   # smoke
    .venv/bin/python -m loadtest.stream_bench --broker apache-kafka \
        --modes naive,batch,redline,redline-eos                           # delivery modes on Apache Kafka

One broker is started on loopback: tansu (memory storage, the default) or, with `--broker
apache-kafka`, Apache Kafka from its jars (tests/brokers/apache_kafka.py, full JIT; needs Java and
Maven). The input topic is filled once with `--events` sample events; every mode then reads that
same topic with its own consumer group into its own output topic, in a separate process:

- naive:   aiokafka getmany → one `send()` per record → wait for acks → commit (no classification)
- batch:   getmany → `create_batch()`/`send_batch()` per partition → wait → commit (no classification)
- redline: `python -m service serve` with its defaults (decode → classify with the pack → encode
           → produce → commit): on 2 CPUs, two stream member processes (REDLINE_STREAM_PROCESSES=auto)
- redline-1: one stream process, inside `serve` (REDLINE_STREAM_PROCESSES=1)
- redline-eos: `redline` with REDLINE_DELIVERY=exactly_once (Apache Kafka only: tansu has no
           transactions); its outputs are read read_committed
- scaleN:  N `serve` processes of one stream process each, in one group, joined before the data
           (scaling on the 2 cores)

Per mode the CPU time per event of the process tree measured (main process, its stream members)
and of the broker, counted while the outputs went from 10% to 90% of the events (start-up and
group join left out), and the tree's resident memory are printed too.

Throughput, two figures: `span` = output records / (last − first output record timestamp), i.e.
without start-up and group join (a burst of output inflates it); `steady` = the outputs between
the 10% and the 90% of them by timestamp over the time between those two, which also leaves out
the seconds before every stream member is busy. The CPU readings (every 0.1 s while waiting for the
group to commit everything) are interpolated to that window. Outputs, not input commits, mark it:
commits trail the work by what a consumer has in flight, far more for `serve` than for the
baselines (usage_between). Ratios are paired within a run.

Latency: events produced to each serve mode measured (redline, redline-1, redline-eos) at 50%
of that mode's own steady throughput for `--latency-seconds`, p50/p99 of two figures: `stamped` =
verdict record timestamp − event record timestamp (both stamped by producers on this machine: when
Redline produced the verdict), and `seen` = the wall-clock time a reader in this process received
the verdict − event record timestamp. Under exactly_once only `seen` includes the wait for the
transaction's commit (a read_committed reader gets a verdict once its transaction committed), so
it is the figure a downstream consumer lives with; the reader waits at most 5 ms for data.
The broker shares the 2 cores with the processes measured; the 1-minute load average is printed
with each run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from service.embedded_broker import EmbeddedBroker, free_port
from service.events import decode_event, decode_verdict
from service.sample_traffic import SampleTraffic
from service.settings import Settings, bundled_rules_dir

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4  # of every topic the bench creates; --partitions sets it for the whole run
# How the bench reads outputs: read_committed on Apache Kafka (what a downstream consumer of
# exactly-once output must do; the same records for the other modes), as tansu always was read.
ISOLATION = "read_uncommitted"
# serve modes: (REDLINE_STREAM_PROCESSES, REDLINE_DELIVERY)
SERVE_MODES = {"redline": ("auto", "at_least_once"), "redline-1": ("1", "at_least_once"),
               "redline-eos": ("auto", "exactly_once")}
BROKERS = ("tansu", "apache-kafka")


# --- pass-through baselines (run as `python -m loadtest.stream_bench passthrough ...`)

def output_compression() -> str | None:
    """The baselines produce with the codec `serve` uses (its default, or REDLINE_PRODUCER_COMPRESSION
    as both inherit it): the comparison is then about Redline's own work, not the codec."""
    codec = os.environ.get("REDLINE_PRODUCER_COMPRESSION", Settings.model_fields["producer_compression"].default)
    return None if codec == "none" else codec


async def passthrough(mode: str, bootstrap: str, source: str, target: str, group: str, expect: int,
                      fetch_max_wait_ms: int = 500) -> None:
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=2000, session_timeout_ms=3000, heartbeat_interval_ms=1000,
                                fetch_max_wait_ms=fetch_max_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=512 * 1024, compression_type=output_compression())
    await producer.start()
    await consumer.start()
    done = 0
    in_flight: list[tuple[list[asyncio.Future[object]], dict[TopicPartition, int]]] = []
    try:
        while done < expect:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not batch:
                # Idle (a live, paced input: loadtest.kafka_load): settle what is in flight, as a
                # consumer that commits on ack would, instead of holding it until the next batch.
                while in_flight:
                    pending, offsets = in_flight.pop(0)
                    await asyncio.gather(*pending)
                    await consumer.commit(offsets)
                continue
            futures: list[asyncio.Future[object]] = []
            for tp, records in batch.items():
                if mode == "naive":
                    for record in records:
                        futures.append(await producer.send(target, record.value, key=record.key))
                else:
                    builder = producer.create_batch()
                    for record in records:
                        if builder.append(key=record.key, value=record.value, timestamp=None) is None:
                            futures.append(await producer.send_batch(builder, target, partition=tp.partition))
                            builder = producer.create_batch()
                            builder.append(key=record.key, value=record.value, timestamp=None)
                    futures.append(await producer.send_batch(builder, target, partition=tp.partition))
                done += len(records)
            in_flight.append((futures, {tp: records[-1].offset + 1 for tp, records in batch.items()}))
            # The fastest shape measured: up to 4 batches in flight, committed in order as acked.
            while len(in_flight) > (0 if done >= expect else 3):
                pending, offsets = in_flight.pop(0)
                await asyncio.gather(*pending)
                await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()


# --- helpers of the runner

async def create_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


def sample_values(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    # 1,000 chats spread keys evenly over the partitions (40 would leave one partition 2x another).
    traffic = SampleTraffic(seed, chats=1000, malformed_ratio=0.0, id_prefix=uuid.uuid4().hex[:6])
    now = datetime.now(UTC)
    return [(r.key, r.value) for r in traffic.records(count, now)]


async def fill(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    """Produce with the batch API, partitioned by key like any client would."""
    from aiokafka.partitioner import DefaultPartitioner

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=512 * 1024, compression_type="lz4")
    await producer.start()
    partitioner = DefaultPartitioner()
    partitions = list(range(PARTITIONS))
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in values:
        by_partition.setdefault(partitioner(key, partitions, partitions), []).append((key, value))
    try:
        futures = []
        for partition, items in by_partition.items():
            builder = producer.create_batch()
            for key, value in items:
                if builder.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = producer.create_batch()
                    builder.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_ready(ports: list[int], timeout_seconds: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_seconds
    async with httpx.AsyncClient() as client:
        for port in ports:
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"service on port {port} not ready")
                await asyncio.sleep(0.2)  # polling a readiness endpoint from outside


async def read_all(bootstrap: str, topic: str, count: int, timeout_seconds: float = 120) -> list[object]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=ISOLATION,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        found: list[object] = []
        deadline = time.monotonic() + timeout_seconds
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                found.extend(records)
        return found
    finally:
        await consumer.stop()


async def start_serve(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "service", "serve", cwd=REPO, env=env)


async def stop_serve(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 60)


def rate_of(records: list[object]) -> float:
    stamps = [r.timestamp for r in records]  # type: ignore[attr-defined]
    span = (max(stamps) - min(stamps)) / 1000
    return (len(stamps) - 1) / span if span > 0 else float("nan")


def serve_env(bootstrap: str, source: str, target: str, group: str, rules: Path,
              port: int | None = None, processes: str = "auto", delivery: str = "at_least_once") -> dict[str, str]:
    """`serve`'s environment for a bench; processes and delivery default to serve's own defaults."""
    return {**os.environ, "REDLINE_STREAM_PROCESSES": processes, "REDLINE_DELIVERY": delivery,
            "REDLINE_KAFKA_BOOTSTRAP": bootstrap, "REDLINE_INPUT_TOPIC": source,
            "REDLINE_OUTPUT_TOPIC": target, "REDLINE_DLQ_TOPIC": f"{target}.dlq", "REDLINE_GROUP_ID": group,
            "REDLINE_HTTP_HOST": "127.0.0.1", "REDLINE_HTTP_PORT": str(port or free_port()),
            "REDLINE_RULES": str(rules), "REDLINE_SESSION_TIMEOUT_MS": "3000",
            "REDLINE_TOPIC_PARTITIONS": str(PARTITIONS),
            "REDLINE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING")}


async def wait_committed(bootstrap: str, topic: str, group: str, total: int, timeout_seconds: float,
                         on_progress: Callable[[int], None] | None = None) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            done = 0
            for p in range(PARTITIONS):
                done += await consumer.committed(TopicPartition(topic, p)) or 0
            if on_progress is not None:
                on_progress(done)
            if done >= total:
                return
            await asyncio.sleep(0.1)  # polling the group's progress from outside: no event to await
        raise TimeoutError(f"group {group} committed fewer than {total} records in {timeout_seconds}s")
    finally:
        await consumer.stop()


@dataclass
class ProcessStats:
    """CPU seconds (user + system) and resident memory of a process, read from /proc."""

    pid: int
    cpu_seconds: float
    rss_bytes: int


def process_tree(pid: int) -> list[ProcessStats]:
    """`pid` and its descendants (the serve process and its stream members)."""
    found: list[ProcessStats] = []
    pending = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            rss_pages = int(Path(f"/proc/{current}/statm").read_text().split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue  # it exited meanwhile
        # Fields after the command: state is [0], utime [11], stime [12] (man 5 proc).
        cpu = (int(fields[11]) + int(fields[12])) / tick
        found.append(ProcessStats(current, cpu, rss_pages * os.sysconf("SC_PAGE_SIZE")))
    return found


@dataclass
class TreeUsage:
    """CPU µs per event of each process of the tree measured (main first) and of the broker, and
    the tree's RSS at the end."""

    cpu_us_per_event: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    broker_cpu_us_per_event: float = float("nan")
    steady_rate: float = float("nan")  # outputs per second from 10% to 90% of them (usage_between)

    def describe(self) -> str:
        names = ["main", *(f"member{i}" for i in range(1, len(self.cpu_us_per_event)))]
        own = ", ".join(f"{name} {cpu:.1f} µs/event CPU, {rss:.0f} MiB RSS"
                        for name, cpu, rss in zip(names, self.cpu_us_per_event, self.rss_mib, strict=True))
        return f"{own}; broker {self.broker_cpu_us_per_event:.1f} µs/event CPU"


@dataclass
class Sample:
    """A reading of the measured tree's and the broker's CPU at a wall-clock time."""

    at: float  # time.time(): the clock the producers stamp records with
    tree: list[ProcessStats]
    broker: ProcessStats | None


async def sample_until_committed(pid: int, broker_pid: int | None, bootstrap: str, source: str, group: str,
                                 total: int) -> list[Sample]:
    """Wait until `total` records are committed, reading `pid`'s tree and the broker at each poll."""
    samples: list[Sample] = []

    def on_progress(done: int) -> None:
        broker = process_tree(broker_pid)[:1] if broker_pid else []
        samples.append(Sample(time.time(), process_tree(pid), broker[0] if broker else None))

    await wait_committed(bootstrap, source, group, total, 600, on_progress)
    return samples


def usage_between(samples: list[Sample], outputs: list[object]) -> TreeUsage:
    """The output rate and CPU per event while the outputs went from 10% to 90% of them (start-up,
    group join and the end left out), from the output records' timestamps.

    Outputs, not input commits, mark the window: a consumer's commits trail its work by what it has
    in flight (`serve`: up to 4 batches of 5,000 per stream process, 13% of 300k events; a baseline
    ~2%), so a window on commits counts work done before it: `serve`'s rate came out ~4% high and
    its CPU per event ~4% low that way, and by half with batches of 20,000. The CPU readings are
    interpolated to the window's ends; a process that exited keeps its last reading."""
    usage = TreeUsage()
    stamps = sorted(r.timestamp for r in outputs)  # type: ignore[attr-defined]
    if len(stamps) < 10 or len(samples) < 2:
        return usage
    first, last = len(stamps) // 10, len(stamps) * 9 // 10
    start, end = stamps[first] / 1000, stamps[last] / 1000
    events = last - first
    usage.steady_rate = events / max(1e-3, end - start)
    readings = _carried(samples)
    at_start, at_end = _cpu_at(samples, readings, start), _cpu_at(samples, readings, end)
    latest: dict[int, ProcessStats] = {}
    for sample in samples:
        latest.update((stats.pid, stats) for stats in sample.tree)
    for pid, stats in latest.items():  # main process first: process_tree starts with it
        usage.cpu_us_per_event.append((at_end.get(pid, 0.0) - at_start.get(pid, 0.0)) / events * 1e6)
        usage.rss_mib.append(stats.rss_bytes / 2**20)
    if _BROKER in readings[-1]:
        usage.broker_cpu_us_per_event = (at_end[_BROKER] - at_start.get(_BROKER, 0.0)) / events * 1e6
    return usage


_BROKER = -1  # the broker's key among the pids of a reading


def _carried(samples: list[Sample]) -> list[dict[int, float]]:
    """CPU seconds per pid at each sample, a pid that is gone keeping its last reading."""
    carried: list[dict[int, float]] = []
    current: dict[int, float] = {}
    for sample in samples:
        current = {**current, **{stats.pid: stats.cpu_seconds for stats in sample.tree}}
        if sample.broker is not None:
            current[_BROKER] = sample.broker.cpu_seconds
        carried.append(current)
    return carried


def _cpu_at(samples: list[Sample], readings: list[dict[int, float]], at: float) -> dict[int, float]:
    """CPU seconds per pid at `at`, linear between the two readings around it."""
    after = next((i for i, sample in enumerate(samples) if sample.at >= at), len(samples) - 1)
    before = max(0, after - 1)
    low, high = readings[before], readings[after]
    span = samples[after].at - samples[before].at
    weight = min(1.0, max(0.0, (at - samples[before].at) / span)) if span > 0 else 1.0
    return {pid: low.get(pid, 0.0) + (value - low.get(pid, 0.0)) * weight for pid, value in high.items()}


async def run_mode(mode: str, broker: BenchBroker, source: str, total: int,
                   rules: Path) -> tuple[float, TreeUsage]:
    """Baselines and one redline process on the shared, pre-filled topic."""
    run = uuid.uuid4().hex[:8]
    bootstrap = broker.bootstrap
    target, group = f"out-{mode}-{run}", f"bench-{mode}-{run}"
    await create_topics(bootstrap, [target])
    if mode in ("naive", "batch"):
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.stream_bench", "passthrough", mode, bootstrap, source, target,
            group, str(total), cwd=REPO)
        samples = await sample_until_committed(child.pid, broker.pid, bootstrap, source, group, total)
        if await asyncio.wait_for(child.wait(), 600) != 0:
            raise RuntimeError(f"{mode} pass-through failed")
    else:
        processes, delivery = SERVE_MODES[mode]
        process = await start_serve(serve_env(bootstrap, source, target, group, rules,
                                              processes=processes, delivery=delivery))
        try:
            samples = await sample_until_committed(process.pid, broker.pid, bootstrap, source, group, total)
        finally:
            await stop_serve(process)
    outputs = await read_all(bootstrap, target, total)
    return rate_of(outputs), usage_between(samples, outputs)


async def run_scaling(members: int, bootstrap: str, values: list[tuple[bytes, bytes]],
                      rules: Path) -> tuple[float, float]:
    """`members` serve processes joined to a fresh, empty topic first; then the events are produced.

    Joining before the data arrives keeps the group's join and rebalance out of the measurement.
    """
    run = uuid.uuid4().hex[:8]
    source, target, group = f"scale-in-{run}", f"scale-out-{run}", f"bench-scale-{run}"
    await create_topics(bootstrap, [source, target])
    ports = [free_port() for _ in range(members)]
    processes = [await start_serve(serve_env(bootstrap, source, target, group, rules, port, processes="1"))
                 for port in ports]
    try:
        await wait_ready(ports)
        await asyncio.sleep(2 * members)  # a late joiner's rebalance settles (tansu: ~half a session)
        await fill(bootstrap, source, values)
        samples = await sample_until_committed(processes[0].pid, None, bootstrap, source, group, len(values))
    finally:
        for process in processes:
            await stop_serve(process)
    outputs = await read_all(bootstrap, target, len(values))
    return rate_of(outputs), usage_between(samples, outputs).steady_rate


@dataclass
class Latency:
    """p50/p99 in ms of `stamped` (verdict record timestamp − event's) and `seen` (received by a
    reader − event's record timestamp), over `events` verdicts."""

    stamped: tuple[float, float]
    seen: tuple[float, float]
    events: int


def _p50_p99(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


@dataclass
class Arrivals:
    """When each verdict reached the live reader (wall clock, ms), by event id."""

    at_ms: dict[str, float] = field(default_factory=dict)
    expected: int | None = None  # known once the producer is done
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, count: int) -> None:
        self.expected = count
        self.check()

    def check(self) -> None:
        if self.expected is not None and len(self.at_ms) >= self.expected:
            self.complete.set()


async def watch_arrivals(bootstrap: str, topic: str, arrivals: Arrivals) -> None:
    """Note the wall-clock time each verdict of `topic` reaches a reader, as a downstream consumer
    would get it (read_committed on Apache Kafka)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=ISOLATION,
                                auto_offset_reset="earliest", fetch_max_wait_ms=5)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        while not arrivals.stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=20_000)
            now_ms = time.time() * 1000
            for records in batch.values():
                for record in records:
                    arrivals.at_ms.setdefault(decode_verdict(record.value).event_id, now_ms)
            arrivals.check()
    finally:
        await consumer.stop()


async def latency(bootstrap: str, rate: float, seconds: float, rules: Path,
                  processes: str = "auto", delivery: str = "at_least_once") -> Latency:
    run = uuid.uuid4().hex[:8]
    source, target, group = f"lat-in-{run}", f"lat-out-{run}", f"bench-lat-{run}"
    await create_topics(bootstrap, [source, target])
    port = free_port()
    process = await start_serve(serve_env(bootstrap, source, target, group, rules, port, processes, delivery))
    arrivals = Arrivals()
    watcher = asyncio.create_task(watch_arrivals(bootstrap, target, arrivals))
    try:
        # Pre-built so that the generator costs little CPU next to the service it measures.
        values = sample_values(int(rate * seconds) + 1, seed=9)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
        await producer.start()
        await wait_ready([port])  # start-up and group join happen before the measured window
        # /readyz is ready once every member has an assignment, which a later member's join may
        # take back: its rebalance (about a 3 s session) settles before the window too.
        await asyncio.sleep(4)
        sent = 0
        started = time.monotonic()
        while time.monotonic() - started < seconds and sent < len(values):
            owed = min(len(values), int(rate * (time.monotonic() - started))) - sent
            builders: dict[int, Any] = {}
            for key, value in values[sent:sent + owed]:
                partition = hash(key) % PARTITIONS
                builder = builders.setdefault(partition, producer.create_batch())
                if builder.append(key=key, value=value, timestamp=None) is None:
                    await producer.send_batch(builder, source, partition=partition)
                    builder = builders[partition] = producer.create_batch()
                    builder.append(key=key, value=value, timestamp=None)
            for partition, builder in builders.items():
                await producer.send_batch(builder, source, partition=partition)
            sent += owed
            await asyncio.sleep(0.005)  # pacing the generator
        await producer.stop()
        await wait_committed(bootstrap, source, group, sent, 120)
        arrivals.expect(sent)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrivals.complete.wait(), 30)
    finally:
        arrivals.stop.set()
        await watcher
        await stop_serve(process)
    events = {decode_event(r.value).id: r.timestamp for r in await read_all(bootstrap, source, sent)}  # type: ignore[attr-defined]
    verdicts = await read_all(bootstrap, target, sent)
    stamped = [r.timestamp - events[decode_verdict(r.value).event_id] for r in verdicts]  # type: ignore[attr-defined]
    seen = [at - events[event_id] for event_id, at in arrivals.at_ms.items() if event_id in events]
    if len(seen) < sent:
        print(f"  ({sent - len(seen)} of {sent} verdicts not seen by the live reader)", flush=True)
    return Latency(_p50_p99(stamped), _p50_p99(seen), len(verdicts))


def engine_ceiling(values: list[tuple[bytes, bytes]], rules: Path) -> float:
    """decode → classify → encode per event in this process, no Kafka: what the CPU allows at best."""
    from service.events import encode_verdict
    from service.rules.loader import load_pack

    engine = load_pack(rules)
    sample = [value for _, value in values[:50_000]]
    started = time.perf_counter()
    events = [decode_event(value) for value in sample]
    for verdict in engine.classify_batch(events, datetime.now(UTC)):
        encode_verdict(verdict)
    return len(sample) / (time.perf_counter() - started)


def report(title: str, runs: int, results: dict[str, list[float]]) -> None:
    median = {mode: statistics.median(values) for mode, values in results.items()}
    print(f"\n{title}: median events/s over {runs} run(s):")
    for mode, value in median.items():
        spread = f"{min(results[mode]):,.0f}–{max(results[mode]):,.0f}"
        print(f"  {mode:11s} {value:>10,.0f}  (range {spread})")
    # Ratios are paired within a run (same minute, same load) and then their median is taken.
    ratios = [("redline", "naive"), ("redline", "batch"), ("redline", "engine"), ("redline", "redline-1"),
              ("redline-1", "naive"), ("redline-1", "batch"), ("scale2", "scale1"), ("scale2", "redline"),
              ("redline-eos", "redline"), ("redline-eos", "naive"), ("redline-eos", "batch")]
    for top, bottom in ratios:
        if {top, bottom} <= median.keys():
            paired = [a / b for a, b in zip(results[top], results[bottom], strict=True)]
            listing = ", ".join(f"{r:.2f}" for r in paired)
            print(f"  {top} / {bottom}: median {statistics.median(paired):.2f}x (runs: {listing})")


class BenchBroker(Protocol):
    @property
    def bootstrap(self) -> str: ...

    @property
    def pid(self) -> int | None: ...


@contextlib.contextmanager
def started_broker(kind: str) -> Iterator[BenchBroker]:
    """tansu (memory storage), or Apache Kafka from its jars with the full JIT (a benchmark measures
    the broker as it runs in production, not the tests' quick-start JVM)."""
    if kind == "tansu":
        with EmbeddedBroker() as tansu:
            yield tansu
        return
    from tests.brokers.apache_kafka import ApacheKafka  # Java and Maven: only this broker needs them

    with tempfile.TemporaryDirectory(prefix="stream-bench-kafka-") as workdir:
        kafka = ApacheKafka(Path(workdir), jvm_options=(), heap_mb=1024)
        kafka.start()
        try:
            yield kafka
        finally:
            kafka.stop()


async def bench(args: argparse.Namespace) -> None:
    global PARTITIONS, ISOLATION  # read by the helpers below; one value per invocation
    PARTITIONS = args.partitions
    ISOLATION = "read_committed" if args.broker == "apache-kafka" else "read_uncommitted"
    rules = args.rules
    values = sample_values(args.events, seed=1)
    modes = [m for m in args.modes.split(",") if m]
    if args.broker == "tansu" and any(SERVE_MODES.get(m, ("", ""))[1] == "exactly_once" for m in modes):
        raise SystemExit("tansu has no transactions: exactly_once modes need --broker apache-kafka")
    with started_broker(args.broker) as broker:
        source = f"bench-in-{uuid.uuid4().hex[:8]}"
        await create_topics(broker.bootstrap, [source])
        await fill(broker.bootstrap, source, values)
        print(f"{args.events} events in {source} ({PARTITIONS} partitions) on {args.broker}; pack {rules}",
              flush=True)
        # Two throughput figures per mode: `span` = output records / their timestamp span (the
        # original measure; a burst of output inflates it), `steady` = outputs per second from 10%
        # to 90% of them (start-up, group join and the end left out; usage_between).
        span: dict[str, list[float]] = {mode: [] for mode in modes}
        steady: dict[str, list[float]] = {mode: [] for mode in modes}
        usages: dict[str, list[TreeUsage]] = {}
        for run in range(args.runs):
            for mode in modes:
                usage = None
                if mode == "engine":
                    rate = steady_rate = engine_ceiling(values, rules)
                elif mode.startswith("scale"):
                    members = int(mode.removeprefix("scale"))
                    rate, steady_rate = await run_scaling(members, broker.bootstrap, values, rules)
                else:
                    rate, usage = await run_mode(mode, broker, source, args.events, rules)
                    steady_rate = usage.steady_rate
                span[mode].append(rate)
                steady[mode].append(steady_rate)
                load = os.getloadavg()[0]
                line = f"run {run + 1} {mode:11s} span {rate:>9,.0f}/s  steady {steady_rate:>9,.0f}/s  load {load:.1f}"
                if usage is not None and usage.cpu_us_per_event:
                    usages.setdefault(mode, []).append(usage)
                    line += f"   ({usage.describe()})"
                print(line, flush=True)
        for title, results in (("span", span), ("steady", steady)):
            report(title, args.runs, results)
        for mode, runs in usages.items():
            shape = len(runs[0].cpu_us_per_event)
            columns = zip(*(u.cpu_us_per_event for u in runs if len(u.cpu_us_per_event) == shape), strict=True)
            cpu = ", ".join(f"{statistics.median(c):.1f}" for c in columns)
            rss = ", ".join(f"{statistics.median(c):.0f}" for c in zip(*(u.rss_mib for u in runs), strict=False))
            broker_cpu = statistics.median(u.broker_cpu_us_per_event for u in runs)
            print(f"  {mode:11s} CPU µs/event (main, members): {cpu}; broker {broker_cpu:.1f}; "
                  f"RSS MiB at the end: {rss}")
        median = {mode: statistics.median(values) for mode, values in steady.items()}
        if args.latency_seconds > 0:
            # Each serve configuration measured at half of what it sustained in the runs above.
            for mode in [m for m in SERVE_MODES if m in median] or ["redline"]:
                rate = args.latency_rate or (median[mode] / 2 if mode in median else 10_000)
                found = await latency(broker.bootstrap, rate, args.latency_seconds, rules, *SERVE_MODES[mode])
                print(f"\nlatency, {mode}, at {rate:,.0f} events/s, {found.events} events: "
                      f"stamped p50 {found.stamped[0]:.0f} ms, p99 {found.stamped[1]:.0f} ms; "
                      f"seen p50 {found.seen[0]:.0f} ms, p99 {found.seen[1]:.0f} ms", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "passthrough":
        mode, bootstrap, source, target, group, expect = sys.argv[2:8]
        fetch_max_wait_ms = int(sys.argv[8]) if len(sys.argv) > 8 else 500  # aiokafka's default
        asyncio.run(passthrough(mode, bootstrap, source, target, group, int(expect), fetch_max_wait_ms))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--modes",
                        default="engine,naive,batch,redline,redline-1,scale1,scale2",
                        help="comma-separated subset of engine,naive,batch,redline,redline-1,redline-eos,scaleN "
                             "(N serve processes of one stream process each)")
    parser.add_argument("--broker", choices=BROKERS, default="tansu")
    parser.add_argument("--partitions", type=int, default=PARTITIONS, help="partitions of every topic")
    parser.add_argument("--latency-rate", type=float,
                        help="events/s for the latency runs (default: 50%% of each serve mode's own rate)")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
