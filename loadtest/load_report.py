"""Figures of a `loadtest.kafka_load` run: per-phase throughput and latency, medians over runs, the
lag timeline; printed as tables and written as JSON and CSV."""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from loadtest.load_probe import Sample

if TYPE_CHECKING:
    from loadtest.kafka_load import TargetRun


@dataclass
class PhaseSummary:
    phase: str
    offered_per_s: float | None  # None: flat out
    seconds: float
    events: int
    produced_per_s: float
    processed_per_s: float  # output records stamped inside the phase window / its length
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    lag_max_records: int  # over the phase and its drain
    outputs: int
    missing: int  # events of the phase without an output record
    duplicates: int  # output records beyond one per event (at-least-once redeliveries)
    drained: bool
    drain_seconds: float
    behind_max_seconds: float  # fixed rate: the generator's worst lateness against its schedule


@dataclass
class TargetSummary:
    target: str
    run: int
    phases: list[PhaseSummary]
    samples: list[Sample]
    unparsed_outputs: int


def _percentiles(values: np.ndarray[tuple[int], np.dtype[np.float64]]) -> tuple[float, float, float, float]:
    if values.size == 0:
        return (float("nan"),) * 4
    p50, p99, p999 = np.percentile(values, [50, 99, 99.9], method="higher")
    return float(p50), float(p99), float(p999), float(values.max())


def summarise(result: TargetRun) -> TargetSummary:
    sequences, stamps = result.output_sequences, result.output_timestamps_ms
    scheduled = np.frombuffer(result.produced.scheduled_ms, dtype=np.float64)
    known = sequences < scheduled.size
    sequences, stamps = sequences[known], stamps[known]
    latency = stamps - scheduled[sequences]
    phases = []
    for phase in result.phases:
        mine = (sequences >= phase.first) & (sequences < phase.end)
        unique = np.unique(sequences[mine]).size
        window = (phase.end_ms - phase.start_ms) / 1000
        in_window = int(np.count_nonzero((stamps >= phase.start_ms) & (stamps < phase.end_ms)))
        p50, p99, p999, worst = _percentiles(latency[mine])
        lags = [s.lag_records for s in result.samples if s.phase in (phase.name, f"drain {phase.name}")]
        phases.append(PhaseSummary(
            phase=phase.name, offered_per_s=phase.rate, seconds=phase.seconds, events=phase.end - phase.first,
            produced_per_s=(phase.end - phase.first) / window, processed_per_s=in_window / window,
            p50_ms=p50, p99_ms=p99, p999_ms=p999, max_ms=worst, lag_max_records=max(lags, default=0),
            outputs=int(np.count_nonzero(mine)), missing=(phase.end - phase.first) - unique,
            duplicates=int(np.count_nonzero(mine)) - unique, drained=phase.drained,
            drain_seconds=round(phase.drain_seconds, 2), behind_max_seconds=round(phase.behind_max_seconds, 4)))
    return TargetSummary(result.target, result.run, phases, result.samples, result.unparsed_outputs)


def _offered(value: float | None) -> str:
    return "flat out" if value is None else f"{value:,.0f}"


def print_phases(summaries: list[TargetSummary]) -> None:
    print("| target | run | phase | offered/s | produced/s | processed/s | p50 ms | p99 ms | p99.9 ms | max ms "
          "| max lag | missing | dup |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in summaries:
        for p in s.phases:
            print(f"| {s.target} | {s.run} | {p.phase} | {_offered(p.offered_per_s)} | {p.produced_per_s:,.0f} "
                  f"| {p.processed_per_s:,.0f} | {p.p50_ms:.0f} | {p.p99_ms:.0f} | {p.p999_ms:.0f} | {p.max_ms:.0f} "
                  f"| {p.lag_max_records:,} | {p.missing} | {p.duplicates} |", flush=True)


def medians(summaries: list[TargetSummary]) -> list[dict[str, object]]:
    """Per target and phase: the median over runs and the min–max of each figure."""
    groups: dict[tuple[str, str], list[PhaseSummary]] = {}
    for s in summaries:
        for p in s.phases:
            groups.setdefault((s.target, p.phase), []).append(p)
    rows: list[dict[str, object]] = []
    for (target, phase), found in groups.items():
        row: dict[str, object] = {"target": target, "phase": phase, "offered_per_s": found[0].offered_per_s,
                                  "runs": len(found)}
        for name in ("processed_per_s", "p50_ms", "p99_ms", "p999_ms", "lag_max_records"):
            values = [float(getattr(p, name)) for p in found]
            row[name] = statistics.median(values)
            row[f"{name}_range"] = [min(values), max(values)]
        rows.append(row)
    return rows


def paired_ratios(summaries: list[TargetSummary], top: str = "redline",
                  bottom: str = "naive") -> dict[str, list[float]]:
    """processed/s of `top` over `bottom`, paired per run and phase (same minutes, same load)."""
    by_key = {(s.target, s.run, p.phase): p.processed_per_s for s in summaries for p in s.phases}
    ratios: dict[str, list[float]] = {}
    for (target, run, phase), value in by_key.items():
        other = by_key.get((bottom, run, phase))
        if target == top and other:
            ratios.setdefault(phase, []).append(value / other)
    return ratios


def _range(row: dict[str, object], name: str, fmt: str) -> str:
    spread = row[f"{name}_range"]
    assert isinstance(spread, list)
    return f"{row[name]:{fmt}} ({spread[0]:{fmt}}–{spread[1]:{fmt}})"


def print_medians(summaries: list[TargetSummary]) -> None:
    rows = medians(summaries)
    runs = max((int(str(r["runs"])) for r in rows), default=0)
    print(f"\nmedians over {runs} run(s), (min–max):")
    print("| target | phase | processed/s | p50 ms | p99 ms | p99.9 ms | max lag |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['target']} | {row['phase']} | {_range(row, 'processed_per_s', ',.0f')} "
              f"| {_range(row, 'p50_ms', '.0f')} | {_range(row, 'p99_ms', '.0f')} | {_range(row, 'p999_ms', '.0f')} "
              f"| {_range(row, 'lag_max_records', ',.0f')} |")
    for phase, ratios in paired_ratios(summaries).items():
        listing = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"redline / naive processed/s, {phase}: median {statistics.median(ratios):.2f}x (runs: {listing})")


def _cell(value: float | None, fmt: str) -> str:
    return "—" if value is None else f"{value:{fmt}}"


def print_lag(summaries: list[TargetSummary], max_rows: int = 40) -> None:
    for s in summaries:
        rows = s.samples
        step = max(1, -(-len(rows) // max_rows))
        shown = rows[::step]
        note = f", every {step}th sample shown (all in samples.csv)" if step > 1 else ""
        print(f"\nlag over time: {s.target}, run {s.run}{note}")
        print("| t s | phase | produced | committed | lag (HW − committed) | Redline gauge | target CPU | "
              "target RSS MiB | broker CPU | generator CPU |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in shown:
            print(f"| {r.t_seconds:.0f} | {r.phase} | {r.produced:,} | {r.committed:,} | {r.lag_records:,} "
                  f"| {_cell(r.lag_gauge_records, ',')} | {_cell(r.target_cpu, '.2f')} "
                  f"| {_cell(r.target_rss_mib, '.0f')} | {_cell(r.broker_cpu, '.2f')} "
                  f"| {_cell(r.generator_cpu, '.2f')} |")


def write(directory: Path, summaries: list[TargetSummary], environment: dict[str, object]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "environment": environment,
        "runs": [{"target": s.target, "run": s.run, "unparsed_outputs": s.unparsed_outputs,
                  "phases": [asdict(p) for p in s.phases], "samples": [asdict(x) for x in s.samples]}
                 for s in summaries],
        "medians": medians(summaries),
        "redline_over_naive": paired_ratios(summaries),
    }
    (directory / "kafka_load.json").write_text(json.dumps(document, indent=2, allow_nan=True) + "\n")
    write_rows(directory / "phases.csv", PhaseSummary, [(s, p) for s in summaries for p in s.phases])
    write_rows(directory / "samples.csv", Sample, [(s, x) for s in summaries for x in s.samples])


def write_rows(path: Path, kind: type[PhaseSummary] | type[Sample],
               rows: list[tuple[TargetSummary, PhaseSummary | Sample]]) -> None:
    """One CSV row per item, prefixed with its run's target and number."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["target", "run", *(f.name for f in fields(kind))])
        for summary, item in rows:
            writer.writerow([summary.target, summary.run, *astuple_row(item)])


def astuple_row(item: PhaseSummary | Sample) -> list[object]:
    return ["" if (value := getattr(item, f.name)) is None else value for f in fields(item)]
