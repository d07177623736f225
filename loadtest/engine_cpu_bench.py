"""Classifier cost in CPU time, for comparing two trees on a shared, noisy machine.

    PYTHONPATH=$TREE .venv/bin/python loadtest/engine_cpu_bench.py [--runs 7]

Run it as a file with PYTHONPATH naming the tree to measure (a `git archive` copy of another
commit works): the tree's `service` and `loadtest` packages are imported, this file only times
them, so two trees are compared with one script. Alternate the trees, several times each.

Prints one JSON line, µs per event as `time.process_time` sees them (min and median of `--runs`
runs: CPU time leaves out time spent descheduled, the main noise here): the default pack's
classify and decode + classify + encode over 20,000 sample events, the same for a generated
pack of 10k keywords + 100 regexes, and the default pack copied with all evasion layers on and
all off (engine_layers_bench's events, 10% evasive) with the ratio of their classify times.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loadtest.engine_bench import NOW, sample_events, write_generated_pack
from loadtest.engine_layers_bench import layered_copy
from loadtest.engine_layers_bench import sample_events as layered_events
from service.engine.classifier import Engine
from service.events import decode_event, encode_verdict
from service.rules.loader import load_pack, load_pack_report
from service.settings import bundled_rules_dir


def _cpu_us(runs: int, count: int, body: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.process_time()
        body()
        samples.append((time.process_time() - started) / count * 1e6)
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    return {"min": round(min(samples), 2), "median": round(statistics.median(samples), 2)}


def pack_costs(pack: Path, raw: list[bytes], runs: int) -> dict[str, dict[str, float]]:
    engine = load_pack(pack)
    events = [decode_event(r) for r in raw]
    engine.classify_batch(events[:2000], NOW)  # warm caches and scratch
    gc.collect()
    gc.freeze()  # as `serve` does with the loaded pack
    try:
        return {
            "classify": _summary(_cpu_us(runs, len(events), lambda: engine.classify_batch(events, NOW))),
            "decode+classify+encode": _summary(
                _cpu_us(runs, len(raw), lambda: [encode_verdict(engine.classify(decode_event(r), NOW)) for r in raw])
            ),
        }
    finally:
        gc.unfreeze()


def layers_ratio(runs: int) -> dict[str, object]:
    engines: dict[str, Engine] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, on in (("on", True), ("off", False)):
            copy = layered_copy(bundled_rules_dir(), Path(tmp) / label, on)
            engines[label] = load_pack_report(copy, check_examples=False).engine
    events = layered_events(20_000, 0.1)
    for engine in engines.values():
        engine.classify_batch(events[:1000], NOW)
    samples: dict[str, list[float]] = {label: [] for label in engines}
    for _ in range(runs):  # alternate, so drift hits both alike
        for label, engine in engines.items():
            started = time.process_time()
            engine.classify_batch(events, NOW)
            samples[label].append((time.process_time() - started) / len(events) * 1e6)
    ratios = [on / off for on, off in zip(samples["on"], samples["off"], strict=True)]
    return {
        "all layers on": _summary(samples["on"]),
        "all layers off": _summary(samples["off"]),
        "ratio of mins": round(min(samples["on"]) / min(samples["off"]), 2),
        "median pair ratio": round(statistics.median(ratios), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    raw = sample_events(20_000)
    with tempfile.TemporaryDirectory() as tmp:
        generated = Path(tmp) / "generated"
        write_generated_pack(generated, 10_000, 100)
        result = {
            "tree": str(Path(bundled_rules_dir()).parents[1]),
            "default pack": pack_costs(bundled_rules_dir(), raw, args.runs),
            "10k keywords + 100 regexes": pack_costs(generated, raw, args.runs),
            "layers (default pack)": layers_ratio(args.runs),
        }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
