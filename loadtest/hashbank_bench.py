"""Hash-bank benchmark: load, memory and lookup latency of a 1,000,000-hash PDQ bank.

    .venv/bin/python -m loadtest.hashbank_bench                 # 3 runs, 1M hashes, medians
    .venv/bin/python -m loadtest.hashbank_bench --hashes 100000 --runs 1

Each run is a fresh subprocess (so RSS is that run's own): it writes a bank file of random
hashes (`<hex> label-N 90` lines), then measures the loader's path (read bytes → parse_bank →
HashBank.build), the resident memory after the load and the peak, and per-lookup latency for
near queries (a bank hash with 0–31 bits flipped), far queries (random hashes), 30-frame videos,
and the same against a *clustered* bank (near-duplicate families, as real PDQ banks have). In
the same run it times two baselines: a linear XOR + popcount scan of the whole bank, and a
per-chunk `searchsorted` variant of the same multi-index (the layout the index did not choose).
Loop counts are bounded; nothing leaves the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.engine.hashbank import CHUNK_VALUES, CHUNKS, HashBank, hamming
from service.rules.hashbanks import parse_bank

Words = npt.NDArray[np.uint64]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_bank(path: Path, words: Words) -> None:
    with path.open("wb") as out:
        for start in range(0, len(words), 65536):
            block = words[start : start + 65536]
            hexes = block.tobytes().hex()
            lines = [f"{hexes[i * 64:(i + 1) * 64]} label-{start + i} 90\n" for i in range(len(block))]
            out.write("".join(lines).encode())


def _flip(rng: np.random.Generator, word: Words, bits: int) -> Words:
    out = word.copy().reshape(1, 4)
    view = out.view(np.uint8).reshape(-1)
    for bit in rng.choice(256, size=bits, replace=False):
        view[bit // 8] ^= np.uint8(1 << (bit % 8))
    return out


def _latencies_us(search: Callable[[Words], object], queries: list[Words]) -> dict[str, float]:
    for q in queries[:20]:
        search(q)  # warm caches and numpy dispatch
    # Wall time and this thread's CPU time: on a shared 2-core machine the wall-clock tail is
    # mostly time spent descheduled, which the CPU-time tail separates out.
    wall, cpu = [], []
    for q in queries:
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        search(q)
        wall.append((time.perf_counter_ns() - t0) / 1000)
        cpu.append((time.thread_time_ns() - c0) / 1000)
    wall.sort()
    cpu.sort()
    p99 = int(len(wall) * 0.99)
    return {
        "p50_us": round(wall[len(wall) // 2], 1),
        "p99_us": round(wall[p99], 1),
        "max_us": round(wall[-1], 1),
        "cpu_p50_us": round(cpu[len(cpu) // 2], 1),
        "cpu_p99_us": round(cpu[p99], 1),
    }


class _SortedChunks:
    """The rejected layout: per chunk, sorted values + argsort, probed with searchsorted."""

    def __init__(self, words: Words, masks: npt.NDArray[np.int64], max_distance: int) -> None:
        self.words, self.masks, self.max_distance = words, masks, max_distance
        chunks = words.view(np.uint16)
        self.order = [np.argsort(chunks[:, j], kind="stable").astype(np.int32) for j in range(CHUNKS)]
        self.values = [chunks[self.order[j], j] for j in range(CHUNKS)]

    def search(self, query: Words) -> bool:
        q = query.view(np.uint16).reshape(-1).astype(np.int64)
        parts: list[npt.NDArray[np.int32]] = []
        for j in range(CHUNKS):
            probes = (q[j] ^ self.masks).astype(np.uint16)
            lo = np.searchsorted(self.values[j], probes, "left")
            hi = np.searchsorted(self.values[j], probes, "right")
            parts.extend(self.order[j][a:b] for a, b in zip(lo, hi, strict=True) if b > a)
        if not parts:
            return False
        candidates = np.concatenate(parts)
        return bool((hamming(np.take(self.words, candidates, axis=0), query) <= self.max_distance).any())


def one_run(count: int, lookups: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {"hashes": count}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bank.txt"
        words = rng.integers(0, 2**64, size=(count, 4), dtype=np.uint64)
        _write_bank(path, words)
        results["file_mb"] = round(path.stat().st_size / 2**20, 1)
        del words
        rss_before = _rss_mb()
        t0 = time.perf_counter()
        data = path.read_bytes()
        t1 = time.perf_counter()
        parsed = parse_bank(data, "bank.txt", 50, [])
        assert parsed is not None
        t2 = time.perf_counter()
        raw, blob, starts, _ = parsed
        bank = HashBank.from_packed("bench", np.frombuffer(raw, dtype=np.uint64).reshape(-1, 4), blob, starts, 31)
        t3 = time.perf_counter()
        del data, parsed, raw
        results.update(
            read_s=round(t1 - t0, 2), parse_s=round(t2 - t1, 2), build_s=round(t3 - t2, 2),
            load_s=round(t3 - t0, 2), rss_mb=round(_rss_mb() - rss_before, 1), peak_mb=round(_peak_mb(), 1),
            rss_before_mb=round(rss_before, 1),
        )
    words = bank.words
    near = [_flip(rng, words[int(rng.integers(count))], int(rng.integers(0, 32))) for _ in range(lookups)]
    far = [rng.integers(0, 2**64, size=(1, 4), dtype=np.uint64) for _ in range(lookups)]
    videos = [np.concatenate([far[i], *near[i : i + 29]]) for i in range(min(lookups, 300))]
    assert all(bank.search(q) for q in near[:200])
    results["near"] = _latencies_us(bank.search, near)
    results["far"] = _latencies_us(bank.search, far)
    results["video_30_frames"] = _latencies_us(bank.search, videos)
    scan_queries = far[: min(100, lookups)]
    results["baseline_linear_scan"] = _latencies_us(lambda q: hamming(words, q).min() <= 31, scan_queries)
    sorted_chunks = _SortedChunks(words, bank.masks, 31)
    results["baseline_searchsorted"] = _latencies_us(sorted_chunks.search, far[: min(500, lookups)])
    del sorted_chunks

    # Clustered: families of 50 near-duplicates (≤ 8 bits apart), like re-encodes of one image.
    families = count // 50
    centers = rng.integers(0, 2**64, size=(families, 4), dtype=np.uint64)
    clustered = np.repeat(centers, 50, axis=0)
    flips = rng.integers(0, 256, size=(len(clustered), 8))
    as_bytes = clustered.view(np.uint8)
    rows = np.arange(len(clustered))[:, None]
    np.bitwise_xor.at(as_bytes, (rows, flips // 8), (1 << (flips % 8)).astype(np.uint8))
    cbank = HashBank.build("clustered", clustered, [b""] * len(clustered), 31)
    cnear = [_flip(rng, centers[int(rng.integers(families))], int(rng.integers(0, 24))) for _ in range(lookups)]
    results["clustered_near"] = _latencies_us(cbank.search, cnear)
    results["clustered_far"] = _latencies_us(cbank.search, far)
    return results


def _median(runs: list[dict[str, Any]], key: str) -> Any:
    first = runs[0][key]
    if isinstance(first, dict):
        return {k: _median([r[key] for r in runs], k) for k in first}
    return statistics.median(r[key] for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one-run", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_run is not None:
        print(json.dumps(one_run(args.hashes, args.lookups, args.one_run)))
        return 0
    runs = []
    for seed in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-m", "loadtest.hashbank_bench", "--hashes", str(args.hashes),
             "--lookups", str(args.lookups), "--one-run", str(seed)],
            capture_output=True, text=True, check=True, timeout=900,
        )
        runs.append(json.loads(out.stdout))
        print(f"run {seed}: {out.stdout.strip()}", file=sys.stderr)
    summary = {key: _median(runs, key) for key in runs[0]}
    print(json.dumps(summary, indent=2))
    scan, index = summary["baseline_linear_scan"]["p50_us"], summary["far"]["p50_us"]
    ss = summary["baseline_searchsorted"]["p50_us"]
    print(f"index vs linear scan (far, p50): {scan / index:.0f}x faster; "
          f"offsets table vs searchsorted (far, p50): {ss / index:.1f}x faster", file=sys.stderr)
    print(f"chunk tables: {CHUNKS} x {CHUNK_VALUES} offsets", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
