"""Memory soak: one `redline serve` under mixed traffic for N minutes, its RSS sampled throughout.

    .venv/bin/python -m loadtest.rss_soak --minutes 10 --out /tmp/soak        # flat out (issue 9's run)
    .venv/bin/python -m loadtest.rss_soak --minutes 2 --rate 20000            # a fixed high rate

The traffic and the harness are `loadtest.kafka_load`'s (one tansu broker, 4 partitions, the
`service.sample_traffic` mix with fresh ids): flat out by default, i.e. the generator keeps the
group's backlog topped up to `--backlog` records so the service never idles. Every
`--sample-seconds` the serve process's RSS (/proc/PID/statm), its process tree's RSS, CPU and the
group's lag are recorded; the output topic is not read back (no latency figures: the soak is about
memory, and reading tens of millions of verdicts would itself take minutes and gigabytes).

RSS after warm-up = the median of the samples in the 30 s after `--warmup-seconds` (60: imports,
first-call paths, caches, the first full GC generations and aiokafka's buffers have settled).
RSS at the end = the median of the last 30 s of samples. Growth = end / after-warm-up − 1; the
issue's target is ≤ 10%. Also reported: the least-squares slope after warm-up (MiB per minute)
and the maximum. Medians of 30 s windows rather than single samples: one sample can land on a
collection or a burst of fetch buffers. The run stops early (and says so) if the machine's
available memory falls below `--min-available-mib`: tansu keeps every record in memory (~60 bytes
per event and verdict, lz4), about 2.5 GB for 10 minutes at 35k events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import statistics
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.kafka_load import LoadOptions, PhaseSpec, machine, run_target, stop_on_sigterm
from loadtest.load_generator import EventPool
from loadtest.load_probe import Sample, available_memory_bytes
from loadtest.open_loop import run as run_async
from loadtest.stream_bench import PARTITIONS
from service.embedded_broker import EmbeddedBroker
from service.settings import bundled_rules_dir

WINDOW_SECONDS = 30.0
TARGET_GROWTH = 0.10


@dataclass
class Growth:
    """One RSS series (MiB) after warm-up."""

    start_mib: float  # the first sample, before warm-up
    after_warmup_mib: float
    end_mib: float
    growth: float  # end / after warm-up − 1
    max_after_warmup_mib: float
    slope_mib_per_minute: float


@dataclass
class SoakResult:
    minutes: float
    rate: float | None
    events: int
    events_per_s: float
    warmup_seconds: float
    serve: Growth  # the serve process
    tree: Growth  # serve and the stream member processes it runs, summed
    lag_max_records: int
    stopped_early: str | None


def growth_of(series: list[tuple[float, float]], warmup_seconds: float) -> Growth:
    after = [(t, v) for t, v in series if t >= warmup_seconds]
    if len(after) < 2:
        raise RuntimeError(f"the run ended before the warm-up ({warmup_seconds:.0f} s) was over")
    warm = statistics.median(v for t, v in after if t < after[0][0] + WINDOW_SECONDS)
    end = statistics.median(v for t, v in after if t > after[-1][0] - WINDOW_SECONDS)
    slope = float(np.polyfit(np.array([t for t, _ in after]) / 60, np.array([v for _, v in after]), 1)[0])
    return Growth(start_mib=round(series[0][1], 1), after_warmup_mib=round(warm, 1), end_mib=round(end, 1),
                  growth=round(end / warm - 1, 4), max_after_warmup_mib=round(max(v for _, v in after), 1),
                  slope_mib_per_minute=round(slope, 3))


def analyse(samples: list[Sample], warmup_seconds: float, minutes: float, rate: float | None,
            stopped_early: str | None) -> SoakResult:
    serve = [(s.t_seconds, s.target_rss_mib) for s in samples if s.target_rss_mib is not None]
    tree = [(s.t_seconds, s.target_tree_rss_mib) for s in samples if s.target_tree_rss_mib is not None]
    measured = [s for s in samples if s.phase != "end"]
    if len(measured) < 2:
        raise RuntimeError("too few samples")
    span = measured[-1].t_seconds - measured[0].t_seconds
    return SoakResult(
        minutes=minutes, rate=rate, events=samples[-1].committed,
        events_per_s=round((measured[-1].committed - measured[0].committed) / span, 1),
        warmup_seconds=warmup_seconds, serve=growth_of(serve, warmup_seconds), tree=growth_of(tree, warmup_seconds),
        lag_max_records=max(s.lag_records for s in samples), stopped_early=stopped_early)


async def soak(args: argparse.Namespace) -> tuple[SoakResult, list[Sample]]:
    options = LoadOptions(rules=args.rules, backlog_cap=args.backlog, sample_seconds=args.sample_seconds,
                          drain_timeout_seconds=120, read_back=False)
    pool = EventPool(args.pool, PARTITIONS, seed=args.seed)
    stopped: list[str] = []
    samples: list[Sample] = []
    with EmbeddedBroker() as broker:
        main = asyncio.create_task(run_target("redline", 1, broker, pool, [PhaseSpec(args.rate, args.minutes * 60)],
                                              options, samples))

        async def guard() -> None:
            while True:
                await asyncio.sleep(2)
                available = available_memory_bytes()
                if available is not None and available < args.min_available_mib * 1024 * 1024:
                    stopped.append(f"available memory fell to {available // 2**20} MiB")
                    main.cancel()
                    return

        watchdog = asyncio.create_task(guard())
        try:
            await main
        except asyncio.CancelledError:
            if not stopped:
                raise
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
    return analyse(samples, args.warmup_seconds, args.minutes, args.rate, stopped[0] if stopped else None), samples


def draw(document: dict[str, Any], out: Path) -> None:
    """RSS (serve, serve + members) and the group's lag over the soak, warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result, samples = document["result"], document["samples"]
    minutes = [s["t_seconds"] / 60 for s in samples]
    figure, (memory, lag) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[2, 1])
    for key, label, colour in (("target_rss_mib", "serve process", "tab:red"),
                               ("target_tree_rss_mib", "serve + member processes", "tab:purple")):
        memory.plot(minutes, [s[key] for s in samples], color=colour, label=label)
        growth = result["serve" if key == "target_rss_mib" else "tree"]
        memory.axhline(growth["after_warmup_mib"] * (1 + TARGET_GROWTH), color=colour, linestyle=":", linewidth=1,
                       label=f"{label}: after warm-up +{TARGET_GROWTH:.0%} (target)")
    for axis in (memory, lag):
        axis.axvspan(0, result["warmup_seconds"] / 60, color="grey", alpha=0.15)
        axis.grid(True, alpha=0.3)
    memory.set_ylim(bottom=0)
    memory.set_ylabel("RSS, MiB")
    memory.legend(fontsize=8, loc="lower right")
    rate = "flat out" if result["rate"] is None else f"{result['rate']:,.0f} events/s"
    memory.set_title(f"redline serve, {result['minutes']:g} min {rate}: {result['events']:,} events "
                     f"({result['events_per_s']:,.0f}/s); RSS growth after warm-up (shaded) "
                     f"{result['serve']['growth']:+.1%}", fontsize=10)
    rates = [(b["committed"] - a["committed"]) / (b["t_seconds"] - a["t_seconds"])
             for a, b in itertools.pairwise(samples)]
    lag.plot(minutes[1:], rates, color="tab:green", linewidth=0.8, label="events/s committed")
    lag.set_ylabel("events/s")
    lag.set_ylim(bottom=0)
    backlog = lag.twinx()
    backlog.plot(minutes, [s["lag_records"] for s in samples], color="tab:blue", linewidth=0.6, alpha=0.6,
                 label="lag (HW − committed)")
    backlog.set_ylabel("lag, records")
    backlog.set_ylim(bottom=0)
    lag.legend(handles=lag.get_lines() + backlog.get_lines(), fontsize=8, loc="lower left")
    lag.set_xlabel("minutes since warm-up events were committed")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    print(f"written: {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="events/s (default: flat out)")
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--backlog", type=int, default=50_000, help="flat out: cap on the group's lag")
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    parser.add_argument("--pool", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--min-available-mib", type=int, default=3000)
    parser.add_argument("--out", type=Path, help="directory for rss_soak.json and rss_samples.csv")
    parser.add_argument("--plot", type=Path, help="also draw RSS and lag over time here (PNG; needs '.[bench]')")
    parser.add_argument("--from-json", type=Path, help="only draw --plot from a previous run's rss_soak.json")
    args = parser.parse_args(argv)
    if args.from_json:
        draw(json.loads(args.from_json.read_text()), args.plot or args.from_json.with_suffix(".png"))
        return 0
    stop_on_sigterm()
    started = machine()
    result, samples = run_async(soak(args))
    print("| t s | RSS MiB | tree RSS MiB | CPU | lag | committed |")
    print("|---|---|---|---|---|---|")
    step = max(1, len(samples) // 40)
    for s in samples[::step]:
        nan = float("nan")
        print(f"| {s.t_seconds:.0f} | {s.target_rss_mib or nan:.1f} | {s.target_tree_rss_mib or nan:.1f} "
              f"| {s.target_cpu or nan:.2f} | {s.lag_records:,} | {s.committed:,} |")
    worst = max(result.serve.growth, result.tree.growth)
    if result.stopped_early:
        print(f"\nstopped early: {result.stopped_early}")
    print(f"\n{result.minutes:g} min, {'flat out' if result.rate is None else f'{result.rate:,.0f}/s'}: "
          f"{result.events:,} events, {result.events_per_s:,.0f} events/s; max lag {result.lag_max_records:,}")
    for name, g in (("serve process", result.serve), ("serve + members", result.tree)):
        print(f"RSS of the {name}: start {g.start_mib} MiB; after warm-up ({result.warmup_seconds:.0f} s) "
              f"{g.after_warmup_mib} MiB; end {g.end_mib} MiB; max {g.max_after_warmup_mib} MiB; "
              f"growth {g.growth:+.1%}; slope {g.slope_mib_per_minute:+.2f} MiB/min")
    print(f"target: growth ≤ {TARGET_GROWTH:.0%} after warm-up: {'met' if worst <= TARGET_GROWTH else 'MISSED'}")
    document = {"result": asdict(result), "machine_at_start": started, "machine_at_end": machine(),
                "argv": sys.argv[1:] if argv is None else argv, "samples": [asdict(s) for s in samples]}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rss_soak.json").write_text(json.dumps(document, indent=2) + "\n")
        with (args.out / "rss_samples.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([f.name for f in fields(Sample)])
            for s in samples:
                writer.writerow(["" if (v := getattr(s, f.name)) is None else v for f in fields(Sample)])
        print(f"written: {args.out}/rss_soak.json, rss_samples.csv")
    if args.plot:
        draw(document, args.plot)
    return 0 if worst <= TARGET_GROWTH else 1


if __name__ == "__main__":
    raise SystemExit(main())
