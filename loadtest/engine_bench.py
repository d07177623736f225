"""Engine micro-benchmarks: cost per event by stage, by pack size and by message length.

    .venv/bin/python -m loadtest.engine_bench            # full run (~2 min)
    .venv/bin/python -m loadtest.engine_bench --quick    # smaller, for a smoke check

Prints medians (and min–max spread) over `--runs` runs of `--events` mixed events from
`service.sample_traffic`, for: the default pack; generated packs of 1k/10k/100k keywords + 100
regexes; texts of growing length. Compile time and resident memory of the generated packs are
measured in fresh subprocesses so one pack's memory does not hide in another's.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import msgspec

from service.engine.classifier import FIELD_GETTERS, Engine
from service.events import ChatEvent, decode_event, encode_verdict
from service.rules.loader import load_pack
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def sample_events(count: int, seed: int = 7) -> list[bytes]:
    traffic = SampleTraffic(seed, malformed_ratio=0.0)
    encoder = msgspec.json.Encoder()
    return [encoder.encode(traffic.event(NOW)) for _ in range(count)]


def _median_us(runs: int, count: int, body: Callable[[], object]) -> tuple[float, float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        body()
        samples.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(samples), min(samples), max(samples)


def stage_costs(engine: Engine, raw: list[bytes], runs: int) -> dict[str, tuple[float, float, float]]:
    events = [decode_event(r) for r in raw]
    text_channel = next((c for c in engine.channels if c.field == "text"), None)
    texts = [FIELD_GETTERS["text"](e) for e in events]
    verdicts = [engine.classify(e, NOW) for e in events]
    n = len(raw)
    costs = {
        "decode": _median_us(runs, n, lambda: [decode_event(r) for r in raw]),
        "classify (normalise+scan+evaluate)": _median_us(runs, n, lambda: engine.classify_batch(events, NOW)),
        "encode": _median_us(runs, n, lambda: [encode_verdict(v) for v in verdicts]),
        "decode+classify+encode": _median_us(
            runs, n, lambda: [encode_verdict(engine.classify(decode_event(r), NOW)) for r in raw]
        ),
    }
    if text_channel is not None:
        normalizer, matcher = text_channel.normalizer, text_channel.matcher
        normalized = [normalizer.normalize(t).text for t in texts]
        costs["  normalise (text field)"] = _median_us(runs, n, lambda: [normalizer.normalize(t) for t in texts])
        costs["  scan (text field)"] = _median_us(runs, n, lambda: [matcher.scan(t) for t in normalized])
    return costs


def write_generated_pack(
    directory: Path, keywords: int, regexes: int, seed: int = 1, *, expansions: bool = True
) -> None:
    """A pack of `keywords` random 2–4 character CJK/Latin terms in 10 rules plus `regexes` regex rules."""
    rng = random.Random(seed)
    terms: set[str] = set()
    while len(terms) < keywords:
        if rng.random() < 0.8:
            terms.add("".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(2, 4))))
        else:
            terms.add("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 9))))
    ordered = sorted(terms)
    (directory / "lexicons").mkdir(parents=True)
    (directory / "rules").mkdir()
    shards = 10
    for shard in range(shards):
        chunk = ordered[shard::shards]
        (directory / "lexicons" / f"k{shard}.txt").write_text("\n".join(chunk) + "\n", encoding="utf-8")
    pack = {
        "name": "generated",
        "version": f"{keywords}k",
        "categories": {"generated": {"description": "generated terms"}},
        "lexicons": {f"k{s}": f"lexicons/k{s}.txt" for s in range(shards)},
    }
    if not expansions:  # keyword-side evasion variants off: text-side folding only
        pack["normalize"] = {"leet": False, "pinyin": False, "emoji": False}
    rules = []
    for shard in range(shards):
        rules.append({
            "id": f"generated.k{shard}", "category": "generated", "severity": "medium", "action": "review",
            "when": {"keywords": {"lexicons": [f"k{shard}"]}},
            "examples": {"match": [f"前缀 {ordered[shard]} 后缀"], "no_match": ["0000"]},
        })
    for i in range(regexes):
        stem = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
        rules.append({
            "id": f"generated.r{i}", "category": "generated", "severity": "low", "action": "review",
            "when": {"regex": f"{stem}[0-9]{{2,6}}(号|元|单)"},
            "examples": {"match": [f"看 {stem}1234元"], "no_match": [f"{stem}元"]},
        })
    (directory / "pack.yaml").write_text(json.dumps(pack, ensure_ascii=False), encoding="utf-8")
    (directory / "rules" / "generated.yaml").write_text(json.dumps({"rules": rules}, ensure_ascii=False), "utf-8")


_MEASURE_PACK = """
import json, resource, sys, time
from pathlib import Path
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
import service.rules.loader as loader
from service.rules.normalizers import Layers, build_normalizer
started = time.perf_counter()
build_normalizer(Layers())  # derived tables: a per-process cost, not per pack
tables = time.perf_counter() - started
before = rss()
started = time.perf_counter()
loader.load_pack_report(Path(sys.argv[1]), check_examples=False)
compile_seconds = time.perf_counter() - started
started = time.perf_counter()
engine = loader.load_pack(Path(sys.argv[1]))
seconds = time.perf_counter() - started
print(json.dumps({"tables_seconds": tables, "compile_seconds": compile_seconds, "load_seconds": seconds,
                  "rss_mib": rss(), "rss_growth_mib": rss() - before,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure_pack_process(directory: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE_PACK, str(directory)], capture_output=True, text=True, check=True
    )
    measured: dict[str, float] = json.loads(result.stdout)
    return measured


def _row(label: str, value: tuple[float, float, float]) -> str:
    median, low, high = value
    return f"  {label:<38} {median:8.2f} µs   (min {low:.2f}, max {high:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10k events, 3 runs, no 100k pack")
    parser.add_argument("--rules", type=Path, default=None, help="pack to measure (default: the bundled pack)")
    parser.add_argument(
        "--no-expansions", action="store_true",
        help="generated packs without keyword-side variants (leet, pinyin, emoji)",
    )
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs = 10_000, 3
    raw = sample_events(args.events)
    print(f"events: {len(raw)} mixed sample events; runs: {args.runs}; medians per event")

    print("\nwire codec (why msgspec): same events, same run")
    from loadtest.baselines.fastapi_noop import ChatEvent as PydanticEvent

    parsed = [PydanticEvent.model_validate_json(r) for r in raw]
    for label, body in (
        ("msgspec decode", lambda: [decode_event(r) for r in raw]),
        ("pydantic v2 decode", lambda: [PydanticEvent.model_validate_json(r) for r in raw]),
        ("pydantic v2 encode", lambda: [p.model_dump_json() for p in parsed]),
    ):
        print(_row(label, _median_us(args.runs, len(raw), body)))

    default_dir = args.rules or bundled_rules_dir()
    engine = load_pack(default_dir)
    gc.collect()
    gc.freeze()  # as `redline serve` does after loading
    print(f"\ndefault pack {engine.ruleset.name} {engine.ruleset.version}: {len(engine.rules)} rules")
    for label, value in stage_costs(engine, raw, args.runs).items():
        print(_row(label, value))

    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            directory = Path(tmp) / f"k{size}"
            write_generated_pack(directory, size, 100, expansions=not args.no_expansions)
            measured = measure_pack_process(directory)
            generated = load_pack(directory)
            costs = stage_costs(generated, raw, args.runs)
            print(
                f"\ngenerated pack: {size} keywords + 100 regexes"
                f"{' (no keyword-side variants)' if args.no_expansions else ''} — parse+validate+compile "
                f"{measured['compile_seconds']:.2f} s, with examples {measured['load_seconds']:.2f} s "
                f"(tables once per process {measured['tables_seconds']:.2f} s); process RSS "
                f"{measured['rss_mib']:.0f} MiB, of which the pack {measured['rss_growth_mib']:.0f} MiB"
            )
            for label in ("classify (normalise+scan+evaluate)", "decode+classify+encode"):
                print(_row(label, costs[label]))
            del generated

        print("\nmessage length (default pack, classify only, text events):")
        rng = random.Random(3)
        base = SampleTraffic(11, malformed_ratio=0.0)
        for length in (10, 100, 1_000, 10_000):
            events = []
            for i in range(max(200, args.events // (length // 10 + 1))):
                text = ""
                while len(text) < length:
                    candidate = base.event(NOW).get("text")
                    text += str(candidate or "") + rng.choice(("，", " ", "。"))
                events.append(ChatEvent(id=str(i), text=text[:length]))
            print(_row(f"{length} characters", _median_us(args.runs, len(events),
                                                           partial(engine.classify_batch, events, NOW))))


if __name__ == "__main__":
    main()
