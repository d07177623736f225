"""Mixed group-chat traffic through `redline serve` and the naive aiokafka pass-through, same run, same events.

    .venv/bin/python -m loadtest.kafka_load --rate 10000 --seconds 20 --runs 3 --out /tmp/load
    .venv/bin/python -m loadtest.kafka_load --seconds 20                     # flat out
    .venv/bin/python -m loadtest.kafka_load --rate 200 --seconds 3 --pool 200 --warmup-events 50   # smoke

Starts one tansu broker (`service.embedded_broker`, memory storage, loopback). For every run and
every target, in turn: fresh input and output topics (4 partitions), the target process, a warm-up
(`--warmup-events` records, waited for until each has its output record: start-up and the group
joins stay out of the figures), then the phases, each followed by a drain: until the group has
committed everything and every event has its output record (`loadtest.load_outputs`):

- naive:   `loadtest.stream_bench passthrough naive`: getmany → one `send()` per record → commit
           (no classification), with Redline's fetch wait (50 ms) so that latencies compare
- redline: `python -m service serve` with the pack (`--rules`)

Traffic: `loadtest.load_generator` (the `service.sample_traffic` mix, encoded once, fresh ids), at
`--rate` events/s on an open-loop schedule, or flat out (backlog capped by `--backlog`).

Figures per phase: events/s produced and processed (verdict records whose timestamp falls inside
the phase window / its length); end-to-end latency p50/p99/p99.9 = output record timestamp −
input record timestamp, both stamped on this machine's clock: the input's is the instant the
schedule meant to send it, the output's is the moment the target appended the verdict to its
producer batch (what Kafka stores as CreateTime). Record timestamps rather than a consumer's
receipt: they need no reader running during the measurement (a third process on 2 cores would
take CPU from the one measured) and they exclude the reader's own fetch wait; they leave out the
verdict's last hop (linger ≤ 5 ms, broker append, a downstream fetch). Consumer lag sampled every
`--sample-seconds`: see `loadtest.load_probe`. Printed as tables; `--out DIR` writes
kafka_load.json, phases.csv and samples.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiokafka import AIOKafkaProducer

from loadtest import load_report
from loadtest.load_generator import EventPool, Generator, Produced
from loadtest.load_outputs import OutputReader
from loadtest.load_probe import CpuMeter, GroupProgress, Sample, lag_gauge, rss_bytes, tree_rss_bytes
from loadtest.stream_bench import PARTITIONS, create_topics, serve_env, start_serve, stop_serve
from service.embedded_broker import EmbeddedBroker, free_port
from service.settings import Settings, bundled_rules_dir

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("naive", "redline")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class PhaseSpec:
    rate: float | None  # events/s; None = flat out
    seconds: float

    @property
    def name(self) -> str:
        return "flat" if self.rate is None else f"{self.rate:.0f}/s"


@dataclass(frozen=True)
class LoadOptions:
    rules: Path = field(default_factory=bundled_rules_dir)
    warmup_events: int = 2000
    backlog_cap: int = 50_000  # flat out: the most records the group may owe
    sample_seconds: float = 1.0
    drain_timeout_seconds: float = 120.0
    read_back: bool = True  # read the output topic for latencies (a long soak skips it: memory, time)


@dataclass
class Phase:
    """What one phase did: its events are sequence numbers [first, end)."""

    name: str
    rate: float | None
    seconds: float
    first: int
    end: int
    start_ms: float
    end_ms: float
    drained: bool
    drain_seconds: float
    behind_max_seconds: float


@dataclass
class TargetRun:
    target: str
    run: int
    phases: list[Phase]
    samples: list[Sample]
    produced: Produced
    output_sequences: np.ndarray[Any, np.dtype[np.int64]]
    output_timestamps_ms: np.ndarray[Any, np.dtype[np.int64]]
    unparsed_outputs: int


@dataclass
class _Live:
    phase: str = "warmup"


async def _start_target(target: str, bootstrap: str, source: str, sink: str, group: str,
                        rules: Path) -> tuple[asyncio.subprocess.Process, str | None]:
    if target == "naive":
        fetch_wait = str(Settings().fetch_max_wait_ms)  # Redline's default: the same idle wait for both
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.stream_bench", "passthrough", "naive", bootstrap, source, sink, group,
            str(10**12), fetch_wait, cwd=REPO)
        return process, None
    port = free_port()
    process = await start_serve(serve_env(bootstrap, source, sink, group, rules, port))
    await _wait_ready(process, f"http://127.0.0.1:{port}/readyz")
    return process, f"http://127.0.0.1:{port}/metrics"


async def _wait_ready(process: asyncio.subprocess.Process, url: str, timeout_seconds: float = 120) -> None:
    deadline = time.monotonic() + timeout_seconds
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"redline serve exited with {process.returncode} before it was ready")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            await asyncio.sleep(0.2)  # polling a readiness endpoint from outside: no event to await
    raise RuntimeError(f"redline serve not ready within {timeout_seconds:.0f} s")


async def _stop_target(target: str, process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    if target == "redline":
        await stop_serve(process)  # SIGTERM: the stream drains and commits
        return
    process.send_signal(signal.SIGTERM)  # the baseline has nothing to drain: its work is committed
    await asyncio.wait_for(process.wait(), 30)


async def _sampler(samples: list[Sample], live: _Live, generator: Generator, progress: GroupProgress,
                   target_pid: int, broker_pid: int | None, metrics_url: str | None,
                   interval_seconds: float) -> None:
    meters = CpuMeter(target_pid), CpuMeter(broker_pid), CpuMeter(None)
    started = time.monotonic()
    async with httpx.AsyncClient() as client:
        while True:
            await asyncio.sleep(interval_seconds)
            gauge = await lag_gauge(client, metrics_url) if metrics_url else None
            produced = generator.produced
            acked, committed = produced.acked_total, progress.total
            target_rss, tree_rss = rss_bytes(target_pid), tree_rss_bytes(target_pid)
            broker_rss = rss_bytes(broker_pid) if broker_pid else None
            samples.append(Sample(
                t_seconds=round(time.monotonic() - started, 3), phase=live.phase, produced=produced.sent,
                acked=acked, committed=committed, lag_records=max(0, acked - committed), lag_gauge_records=gauge,
                target_cpu=meters[0].share(), target_rss_mib=target_rss / _MIB if target_rss else None,
                target_tree_rss_mib=tree_rss / _MIB if tree_rss else None,
                broker_cpu=meters[1].share(), broker_rss_mib=broker_rss / _MIB if broker_rss else None,
                generator_cpu=meters[2].share()))


async def run_target(target: str, run: int, broker: EmbeddedBroker, pool: EventPool, phases: list[PhaseSpec],
                     options: LoadOptions, samples: list[Sample] | None = None) -> TargetRun:
    """`samples` (optional) receives the samples as they are taken: a caller may stop the run early."""
    bootstrap = broker.bootstrap
    warmup_events = options.warmup_events
    tag = uuid.uuid4().hex[:8]
    source, sink, group = f"load-in-{tag}", f"load-out-{tag}", f"load-{target}-{tag}"
    await create_topics(bootstrap, [source, sink])
    process, metrics_url = await _start_target(target, bootstrap, source, sink, group, options.rules)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=512 * 1024, compression_type="lz4")
    progress = GroupProgress(bootstrap, source, group, PARTITIONS)
    generator = Generator(producer, source, pool, record_schedule=options.read_back)
    verdicts = target == "redline"  # the baseline passes the events through
    reader = (OutputReader(bootstrap, sink, PARTITIONS, lambda value: pool.sequence_of(value, verdicts))
              if options.read_back else None)
    live = _Live()
    samples = [] if samples is None else samples
    done: list[Phase] = []
    sampler: asyncio.Task[None] | None = None
    try:
        await producer.start()
        await progress.start()
        if reader is not None:
            await reader.start()
        # Warm-up: the group join, first-call paths and caches, before anything is measured.
        await generator.burst(warmup_events)
        await generator.flush()
        if not await progress.wait_for(warmup_events, 120):
            raise RuntimeError(f"{target}: warm-up not committed within 120 s (is the consumer running?)")
        if reader is not None and not await reader.read_until(warmup_events, 120):
            raise RuntimeError(f"{target}: warm-up events without output after 120 s")
        sampler = asyncio.create_task(_sampler(samples, live, generator, progress, process.pid, broker.pid,
                                               metrics_url, options.sample_seconds))
        for spec in phases:
            live.phase = spec.name
            first = generator.produced.sent
            generator.produced.behind_max_seconds = 0.0
            start_ms = time.time() * 1000
            if spec.rate is None:
                await generator.flat_out(spec.seconds, options.backlog_cap, lambda: progress.total)
            else:
                await generator.fixed_rate(spec.rate, spec.seconds)
            end_ms = time.time() * 1000
            live.phase = f"drain {spec.name}"
            await generator.flush()
            drain_started = time.monotonic()
            drained = await progress.wait_for(generator.produced.sent, options.drain_timeout_seconds)
            if reader is not None:
                left = max(1.0, options.drain_timeout_seconds - (time.monotonic() - drain_started))
                drained = await reader.read_until(generator.produced.sent, left) and drained
            phase = Phase(spec.name, spec.rate, spec.seconds, first, generator.produced.sent, start_ms, end_ms,
                          drained, time.monotonic() - drain_started, generator.produced.behind_max_seconds)
            done.append(phase)
            if process.returncode is not None:
                raise RuntimeError(f"{target} exited with {process.returncode} during phase {spec.name}")
        live.phase = "end"
        await asyncio.sleep(options.sample_seconds + 0.1)  # one sample after the last drain
    finally:
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        with contextlib.suppress(Exception):
            await producer.stop()
        await progress.stop()
        if reader is not None:
            await reader.stop()
        await _stop_target(target, process)
    if reader is None:
        nothing = np.zeros(0, np.int64)
        return TargetRun(target, run, done, samples, generator.produced, nothing, nothing, 0)
    return TargetRun(target, run, done, samples, generator.produced, np.frombuffer(reader.sequences, np.int64),
                     np.frombuffer(reader.stamps_ms, np.int64), reader.unparsed)


def machine() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": sys.version.split()[0],
            "load_average": [round(x, 2) for x in os.getloadavg()], "code": revision()}


def revision() -> str:
    """The commit measured, and whether service/ or rules/ differed from it (read-only git calls)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "service", "rules"], cwd=REPO,
                                 capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + {len(changed)} uncommitted files in service/, rules/" if changed else head


async def run_load(phases: list[PhaseSpec], targets: list[str], runs: int, options: LoadOptions, pool_size: int,
                   seed: int) -> list[load_report.TargetSummary]:
    pool = EventPool(pool_size, PARTITIONS, seed=seed)
    print(f"traffic pool: {pool_size} events, kinds {dict(sorted(pool.kinds.items()))}", flush=True)
    summaries: list[load_report.TargetSummary] = []
    with EmbeddedBroker() as broker:
        for run in range(runs):
            # Alternate who goes first: the machine's load drifts over minutes.
            order = targets if run % 2 == 0 else list(reversed(targets))
            for target in order:
                result = await run_target(target, run + 1, broker, pool, phases, options)
                summary = load_report.summarise(result)
                summaries.append(summary)
                load_report.print_phases([summary])
    return summaries


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the broker and the services this tool started are stopped too."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, help="events/s on an open-loop schedule (default: flat out)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the measured phase")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of naive,redline")
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    parser.add_argument("--pool", type=int, default=20_000, help="distinct sample events rotated (fresh ids)")
    parser.add_argument("--warmup-events", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=50_000, help="flat out: cap on the group's lag")
    parser.add_argument("--sample-seconds", type=float, default=1.0)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, help="directory for kafka_load.json, phases.csv, samples.csv")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets {sorted(unknown)}")
    phases = [PhaseSpec(args.rate, args.seconds)]
    started = machine()
    stop_on_sigterm()
    from loadtest.open_loop import run as run_async

    options = LoadOptions(rules=args.rules, warmup_events=args.warmup_events, backlog_cap=args.backlog,
                          sample_seconds=args.sample_seconds, drain_timeout_seconds=args.drain_timeout)
    summaries = run_async(run_load(phases, targets, args.runs, options, args.pool, args.seed))
    environment = {"machine_at_start": started, "machine_at_end": machine(), "rules": str(args.rules),
                   "partitions": PARTITIONS, "argv": sys.argv[1:] if argv is None else argv}
    print()
    load_report.print_phases(summaries)
    load_report.print_medians(summaries)
    load_report.print_lag(summaries)
    if args.out:
        load_report.write(args.out, summaries, environment)
        print(f"\nwritten: {args.out}/kafka_load.json, phases.csv, samples.csv")
    return 0 if all(p.drained for s in summaries for p in s.phases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
