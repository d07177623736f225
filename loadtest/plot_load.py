"""Throughput and latency against offered load, stream and HTTP, drawn as one PNG.

    .venv/bin/python -m loadtest.plot_load --out docs/img/load.png            # measure and draw (~20 min)
    .venv/bin/python -m loadtest.plot_load --out docs/img/load.png --from-json docs/img/load.json   # redraw

Needs matplotlib: `pip install -e '.[dev,bench]'`.

Stream (`loadtest.kafka_load`): a 15-s flat-out calibration of `redline serve` gives its maximum
M; then, `--runs` times, the naive pass-through and `redline serve` each take fixed-rate phases at
`--fractions` × M (same absolute rates for both) and a flat-out phase, in one process per target
and run. Per rate: median processed events/s and latency p50/p99 over the runs, min–max as bars.
HTTP (`loadtest.open_loop` against one uvicorn worker serving `/check`, as `loadtest.http_bench`
starts it): a closed-loop wrk run (concurrency 32) gives its maximum, then open-loop runs at the same
fractions; latency counts from each request's scheduled time. The figures land in a JSON next to
the PNG, so the plot can be redrawn (`--from-json`) without measuring again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest import http_bench, load_report
from loadtest.kafka_load import LoadOptions, PhaseSpec, machine, run_load, stop_on_sigterm
from loadtest.open_loop import run as run_async
from loadtest.open_loop import run_open_loop
from service.settings import bundled_rules_dir


def measure_stream(args: argparse.Namespace, options: LoadOptions) -> dict[str, Any]:
    calibration = run_async(run_load([PhaseSpec(None, args.calibration_seconds)], ["redline"], 1, options,
                                     args.pool, args.seed))
    top = calibration[0].phases[0].processed_per_s
    print(f"\nstream calibration: redline flat out {top:,.0f} events/s", flush=True)
    phases = [PhaseSpec(round(f * top), args.seconds) for f in args.fractions] + [PhaseSpec(None, args.seconds)]
    summaries = run_async(run_load(phases, ["naive", "redline"], args.runs, options, args.pool, args.seed))
    load_report.print_medians(summaries)
    return {"calibration_events_per_s": top, "fractions": args.fractions, "medians": load_report.medians(summaries),
            "runs": [{"target": s.target, "run": s.run, "phases": [vars(p) for p in s.phases]} for s in summaries]}


def measure_http(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="plot-load-") as tmp:
        bodies = http_bench.sample_bodies()
        script = http_bench.wrk_script(bodies, Path(tmp))
        server = http_bench.start_server("redline", args.rules)
        try:
            http_bench.run_wrk(server.url, script, 8, 2)  # warm-up
            top = http_bench.run_wrk(server.url, script, 32, args.http_seconds).rps
            print(f"\nHTTP calibration: wrk -c32 {top:,.0f} req/s", flush=True)
            raw = [body.encode() for body in bodies]
            points: list[dict[str, Any]] = []
            for fraction in args.fractions:
                rate = round(fraction * top)
                runs = [run_async(run_open_loop(f"{server.url}/check", raw, rate, args.http_seconds))
                        for _ in range(args.runs)]
                for r in runs:
                    print(f"  open loop {rate}/s: completed {r.completed}/{r.scheduled} failed {r.failed} "
                          f"p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms", flush=True)
                points.append({"fraction": fraction, "offered_per_s": rate, "runs": [vars(r) for r in runs]})
        finally:
            server.stop()
    return {"calibration_req_per_s": top, "points": points}


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _errorbar(axis: Any, xs: list[float], triples: list[tuple[float, float, float]], **style: Any) -> None:
    mids = [t[0] for t in triples]
    low = [t[0] - t[1] for t in triples]
    high = [t[2] - t[0] for t in triples]
    axis.errorbar(xs, mids, yerr=[low, high], capsize=3, markersize=4, **({"marker": "o"} | style))


def _draw_stream(stream: dict[str, Any], throughput: Any, latency: Any, colours: dict[str, str]) -> None:
    top = stream["calibration_events_per_s"]
    rows = [r for r in stream["medians"] if r["offered_per_s"] is not None]
    flat = {r["target"]: r for r in stream["medians"] if r["offered_per_s"] is None}
    for target, label in (("naive", "naive aiokafka pass-through (no classification)"),
                          ("redline", "redline serve (default pack)")):
        mine = sorted((r for r in rows if r["target"] == target), key=lambda r: r["offered_per_s"])
        xs = [r["offered_per_s"] for r in mine]
        _errorbar(throughput, xs, [(r["processed_per_s"], *r["processed_per_s_range"]) for r in mine],
                  color=colours[target], label=label)
        if target in flat:
            throughput.axhline(flat[target]["processed_per_s"], color=colours[target], linestyle=":", linewidth=1,
                               label=f"{target} flat out: {flat[target]['processed_per_s']:,.0f}/s")
        _errorbar(latency, xs, [(r["p50_ms"], *r["p50_ms_range"]) for r in mine], color=colours[target],
                  label=f"{target} p50")
        _errorbar(latency, xs, [(r["p99_ms"], *r["p99_ms_range"]) for r in mine], color=colours[target],
                  linestyle="--", marker="s", label=f"{target} p99 (dashed)")
    edge = max(r["offered_per_s"] for r in rows) * 1.05
    throughput.plot([0, edge], [0, edge], color="grey", linewidth=0.8, linestyle="--", label="processed = offered")
    throughput.set_title(f"Kafka stream: throughput (redline flat-out calibration {top:,.0f}/s)")
    throughput.set_ylabel("processed events/s (median, min–max bars)")
    latency.set_title("Kafka stream: event produced → verdict produced")
    latency.set_ylabel("latency, ms (log)")
    latency.set_yscale("log")


def draw(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    colours = {"redline": "tab:red", "naive": "tab:blue"}
    (throughput, latency), (http_throughput, http_latency) = axes
    if "stream" in data:
        _draw_stream(data["stream"], throughput, latency, colours)
    else:
        throughput.set_visible(False)
        latency.set_visible(False)
    http = data.get("http")
    if http:
        xs = [p["offered_per_s"] for p in http["points"]]
        seconds = http["points"][0]["runs"][0]["seconds"]
        _errorbar(http_throughput, xs, [_stats([r["completed"] / seconds for r in p["runs"]]) for p in http["points"]],
                  color=colours["redline"], label="redline POST /check, answered req/s")
        http_throughput.plot([0, max(xs) * 1.05], [0, max(xs) * 1.05], color="grey", linewidth=0.8, linestyle="--",
                             label="answered = offered")
        closed = http["calibration_req_per_s"]
        http_throughput.set_title(f"HTTP /check, open loop, 1 worker (wrk -c32 max {closed:,.0f}/s)")
        http_throughput.set_ylabel("answered req/s (median, min–max bars)")
        for key, style, marker in (("p50_ms", "-", "o"), ("p99_ms", "--", "s")):
            _errorbar(http_latency, xs, [_stats([r[key] for r in p["runs"]]) for p in http["points"]],
                      color=colours["redline"], linestyle=style, marker=marker, label=f"/check {key[:3]}")
        http_latency.set_title("HTTP /check: latency from the scheduled send time")
        http_latency.set_ylabel("latency, ms (log)")
        http_latency.set_yscale("log")
    else:
        for axis in (http_throughput, http_latency):
            axis.set_visible(False)
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}")
    for axis in axes.flat:
        if not axis.get_visible():
            continue
        axis.set_xlabel("offered load, per second")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
        axis.xaxis.set_major_formatter(plain)
        axis.yaxis.set_major_formatter(plain)
    meta = data.get("machine", {})
    loads = [m["load_average"][0] for m in (meta, data.get("machine_at_end", {})) if m.get("load_average")]
    load = f"load average {' → '.join(f'{x:.1f}' for x in loads)}" if loads else "load not recorded"
    figure.suptitle(f"Redline under load — {meta.get('cpus', '?')} cores ({meta.get('cpu_model', '')}), "
                    f"{load}; medians of {data.get('runs', '?')} runs; code {meta.get('code', '?')}",
                    fontsize=10)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"written: {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/img/load.png"))
    parser.add_argument("--from-json", type=Path, help="redraw from a previous run's figures")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="per stream phase")
    parser.add_argument("--calibration-seconds", type=float, default=15.0)
    parser.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")],
                        default=[0.2, 0.4, 0.6, 0.8, 1.0, 1.2], help="of the measured maximum")
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    parser.add_argument("--pool", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    data: dict[str, Any]
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        stop_on_sigterm()
        data = {"machine": machine(), "runs": args.runs}
        if not args.no_stream:
            data["stream"] = measure_stream(args, LoadOptions(rules=args.rules))
        if not args.no_http:
            data["http"] = measure_http(args)
        data["machine_at_end"] = machine()
        args.out.with_suffix(".json").parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    draw(data, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
