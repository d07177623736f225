"""HTTP throughput and latency of `POST /check` and `POST /check/batch` against two baselines, same run.

    .venv/bin/python -m loadtest.http_bench                          # 3 runs, default pack (~6 min)
    .venv/bin/python -m loadtest.http_bench --runs 1 --duration 3 --open-loop-seconds 5   # smoke

Three uvicorn servers, one worker each, identical flags (uvloop, httptools, access log off),
each on a free loopback port:

- raw:      `loadtest/baselines/raw_asgi.py`, a raw ASGI app echoing the body (the ceiling)
- noop:     `loadtest/baselines/fastapi_noop.py`, FastAPI validating ChatEvent-shaped pydantic
            models and returning dicts (no classification), for `/check` and `/check/batch`
- redline:  `create_app(Runtime.load(settings))` with the pack (`--rules`), classifying

Closed loop: Debian `wrk -t1 -cC -dD --latency` at each concurrency, the servers interleaved in
every run; the bodies rotate over 200 sample events (`service.sample_traffic`, seed 7) for all
three. Medians over `--runs`, with the per-run ratios (runs are paired in time). Then the same
for `/check/batch`: `--batch-size` events per request (default 50, the same sample events),
at `--batch-concurrency`; the echo returns the array, the no-op validates and answers a list.
Open loop (`loadtest/open_loop.py`): a fixed arrival rate of half
of redline's best closed-loop rate, latency counted from each request's scheduled time, so a
slow answer cannot hold back the next request (no coordinated omission). Reload under load: the
same open-loop load while `POST /rules/reload` runs `--reloads` times; failed requests counted,
reload times reported.

Load generator and server share the 2 cores of this machine (and other work): figures are noisy.
Only 127.0.0.1 is targeted; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtest.open_loop import OpenLoopResult, run_open_loop
from loadtest.open_loop import run as run_async
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir

REPO = Path(__file__).resolve().parents[1]
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
                 "--workers", "1"]
SERVERS = {
    "raw": ["loadtest.baselines.raw_asgi:app"],
    "noop": ["loadtest.baselines.fastapi_noop:app"],
    "redline": ["--factory", "loadtest.redline_app:create"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(name: str, rules: Path) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
    env |= {"REDLINE_RULES": str(rules), "REDLINE_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "uvicorn", *SERVERS[name], "--host", "127.0.0.1", "--port", str(port),
               *UVICORN_FLAGS]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    server = Server(name, port, process)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # any HTTP answer means it listens (the pack loads first)
        if process.poll() is not None:
            raise RuntimeError(f"{name} server exited with {process.returncode}")
        try:
            httpx.get(f"{server.url}/healthz", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} server did not start")


def sample_bodies(count: int = 200) -> list[str]:
    traffic = SampleTraffic(seed=7)
    return [json.dumps(traffic.event(), ensure_ascii=False) for _ in range(count)]


def batch_bodies(bodies: list[str], size: int, count: int = 40) -> list[str]:
    """`count` JSON arrays of `size` sample events each, rotating over `bodies`."""
    return ["[" + ",".join(bodies[(i * size + j) % len(bodies)] for j in range(size)) + "]" for i in range(count)]


def wrk_script(bodies: list[str], directory: Path, path: str = "/check") -> Path:
    # Long brackets hold the JSON verbatim; bodies never contain "]==]".
    listed = ",\n".join(f"[==[{body}]==]" for body in bodies)
    script = directory / f"{path.strip('/').replace('/', '_')}.lua"
    script.write_text(
        "local bodies = {\n" + listed + "\n}\n"
        "local headers = {[\"Content-Type\"] = \"application/json\"}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        f"  return wrk.format(\"POST\", \"{path}\", headers, bodies[i])\n"
        "end\n",
        encoding="utf-8",
    )
    return script


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def run_wrk(url: str, script: Path, connections: int, seconds: float, path: str = "/check") -> WrkResult:
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "5s", "--latency", "-s", str(script),
         f"{url}{path}"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if found := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(found.group(1))
    if found := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(n) for n in found.groups())
    return WrkResult(rps, p50, p99, errors)


async def reload_under_load(url: str, bodies: list[bytes], rate: int, seconds: float,
                            reloads: int) -> tuple[OpenLoopResult, list[float], list[int]]:
    """The open-loop load, with `reloads` POST /rules/reload spread over it."""
    load = asyncio.create_task(run_open_loop(f"{url}/check", bodies, rate, seconds))
    times: list[float] = []
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for _ in range(reloads):
            await asyncio.sleep(seconds / (reloads + 1))
            started = time.perf_counter()
            response = await client.post("/rules/reload")
            times.append(time.perf_counter() - started)
            statuses.append(response.status_code)
    return await load, times, statuses


def closed_loop(servers: dict[str, Server], script: Path, concurrencies: list[int], runs: int,
                duration: int, path: str = "/check", events_per_request: int = 1) -> list[dict[str, float]]:
    closed: dict[tuple[str, int], list[WrkResult]] = {}
    for run in range(runs):
        order = list(servers)[run % 3:] + list(servers)[:run % 3]  # nobody always goes first
        for connections in concurrencies:
            for name in order:
                result = run_wrk(servers[name].url, script, connections, duration, path)
                closed.setdefault((name, connections), []).append(result)
                print(f"run {run + 1} {path} c={connections:<4} {name:<8} {result.rps:>9.0f} req/s  "
                      f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                      flush=True)

    def med(name: str, c: int, field: str) -> float:
        return median([getattr(r, field) for r in closed[(name, c)]])

    def paired(c: int, baseline: str) -> str:  # per-run ratios: the runs are paired in time
        ratios = [r.rps / b.rps for r, b in zip(closed[("redline", c)], closed[(baseline, c)], strict=True)]
        return ", ".join(f"{x:.2f}" for x in ratios)

    unit = "req/s" if events_per_request == 1 else f"req/s ({events_per_request} events each)"
    print(f"\nclosed loop {path} (wrk -t1), medians of", runs, "runs")
    print(f"| concurrency | raw ASGI {unit} | FastAPI no-op {unit} | redline {path} {unit} | "
          "redline events/s | redline p50 / p99 ms | × no-op (runs) | × raw (runs) |")
    print("|---|---|---|---|---|---|---|---|")
    table = []
    for c in concurrencies:
        raw, noop, red = med("raw", c, "rps"), med("noop", c, "rps"), med("redline", c, "rps")
        row = {"concurrency": c, "raw": raw, "noop": noop, "redline": red,
               "redline_events_per_s": red * events_per_request,
               "redline_p50_ms": med("redline", c, "p50_ms"), "redline_p99_ms": med("redline", c, "p99_ms"),
               "vs_noop": red / noop, "vs_raw": red / raw}
        table.append(row)
        print(f"| {c} | {raw:,.0f} | {noop:,.0f} | {red:,.0f} | {row['redline_events_per_s']:,.0f} | "
              f"{row['redline_p50_ms']:.2f} / {row['redline_p99_ms']:.2f} | "
              f"{row['vs_noop']:.2f} ({paired(c, 'noop')}) | {row['vs_raw']:.2f} ({paired(c, 'raw')}) |")
    errors = sum(r.errors for results in closed.values() for r in results)
    print(f"best redline rate {max(row['redline'] for row in table):,.0f} req/s; "
          f"errors in closed-loop runs: {errors}")
    return table


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--concurrency", default="8,32,128")
    parser.add_argument("--open-loop-seconds", type=float, default=20)
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--open-loop-fractions", default="0.25,0.5", help="of the best closed-loop rate")
    parser.add_argument("--reload-fraction", type=float, default=0.5)
    parser.add_argument("--max-rate", type=float, help="skip the closed loop and take this as the best rate")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--batch-size", type=int, default=50,
                        help="events per POST /check/batch in the batch closed loop (0: skip it)")
    parser.add_argument("--batch-concurrency", default="8,32")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    fractions = [float(f) for f in args.open_loop_fractions.split(",")]

    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        workdir = Path(tmp)
        bodies = sample_bodies()
        script = wrk_script(bodies, workdir)
        raw_bodies = [body.encode() for body in bodies]
        pack = Path(shutil.copytree(args.rules, workdir / "pack"))  # reloads read this copy
        servers = {name: start_server(name, pack) for name in SERVERS}
        try:
            for server in servers.values():  # warm-up: imports, first-request paths, caches
                run_wrk(server.url, script, 8, 2)
            table = [] if args.max_rate else closed_loop(servers, script, concurrencies, args.runs, args.duration)
            batch_table = []
            if args.batch_size and not args.max_rate:
                batch_script = wrk_script(batch_bodies(bodies, args.batch_size), workdir, "/check/batch")
                for server in servers.values():
                    run_wrk(server.url, batch_script, 8, 2, "/check/batch")
                batch_table = closed_loop(
                    servers, batch_script, [int(c) for c in args.batch_concurrency.split(",")], args.runs,
                    args.duration, "/check/batch", args.batch_size,
                )
            best = args.max_rate or max(row["redline"] for row in table)
            url = servers["redline"].url
            open_results: dict[float, list[OpenLoopResult]] = {}
            for fraction in fractions:
                rate = int(best * fraction)
                runs = [run_async(run_open_loop(f"{url}/check", raw_bodies, rate, args.open_loop_seconds))
                        for _ in range(args.runs)]
                open_results[fraction] = runs
                print(f"\nopen loop at {fraction:.0%} of {best:,.0f} req/s = {rate}/s for "
                      f"{args.open_loop_seconds:.0f} s, per run:")
                for o in runs:
                    print(f"  completed {o.completed}/{o.scheduled}  failed {o.failed}  p50 {o.p50_ms:.2f} ms  "
                          f"p99 {o.p99_ms:.2f} ms  max {o.max_ms:.1f} ms  max backlog {o.max_backlog}")
                print(f"  median p50 {median([o.p50_ms for o in runs]):.2f} ms, "
                      f"median p99 {median([o.p99_ms for o in runs]):.2f} ms")

            rate = int(best * args.reload_fraction)
            loaded, reload_times, reload_statuses = run_async(reload_under_load(
                url, raw_bodies, rate, args.open_loop_seconds, args.reloads))
            print(f"\nreload under load ({args.reloads} × POST /rules/reload during {rate}/s open loop):")
            print(f"  reload statuses {reload_statuses}; seconds {[round(t, 2) for t in reload_times]}")
            print(f"  completed {loaded.completed}/{loaded.scheduled}  failed {loaded.failed}  "
                  f"p50 {loaded.p50_ms:.2f} ms  p99 {loaded.p99_ms:.2f} ms  max {loaded.max_ms:.1f} ms  "
                  f"statuses {loaded.statuses}")
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({
                    "closed": table, "closed_batch": batch_table, "batch_size": args.batch_size, "best": best,
                    "open": {str(f): [o.__dict__ for o in runs] for f, runs in open_results.items()},
                    "reload": {"statuses": reload_statuses, "seconds": reload_times, "load": loaded.__dict__},
                }, indent=2))
        finally:
            for server in servers.values():
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
