"""The engine's batch path against its per-event path, same run: CPU per event (issue 21).

    .venv/bin/python -m loadtest.engine_batch_bench              # ~2 min
    .venv/bin/python -m loadtest.engine_batch_bench --runs 3 --events 5000   # smoke

Both paths start from the wire bytes of `service.sample_traffic` events and end at the verdict
records' bytes, default pack (or `--rules`):
- `per event`: decode, `Engine.classify`, `encode_verdict`, one event at a time (the path every
  door took before the batch entry);
- `batch`: what the stream does with a fetch (`REDLINE_BATCH_MAX_RECORDS`, 5,000): decode each
  record, cut the events into slices of 64 Ki scanned characters (service.batches), one
  `Engine.classify_batch` call per slice, plain allows encoded from the batch's template
  (`plain_allow_encoder`), the others with `encode_verdict`.

Traffic: the sample mix, and `clean`: the events of the mix with no hit (no pattern found in any
field, no model score over a threshold, no rule of their kind to evaluate: plain allows). Then how
the batch path's cost grows with the batch size (one unsliced call of 100 … 20,000 events) and with
the text length, small batches with the batch machinery forced against one by one (where
`PER_EVENT_BELOW` comes from), and the tail: what one 1 MiB text adds to the other events of its batch.

Times are CPU (`time.process_time`: time spent descheduled on this shared machine is left out),
µs per event, median of `--runs` runs with both paths alternating in each run.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from loadtest.engine_bench import NOW, sample_events
from service.batches import SLICE_CHARS, slices_by_chars
from service.engine.batch import find_batch
from service.engine.classifier import Engine
from service.engine.plan import plan_channels
from service.events import ChatEvent, Verdict, decode_event, encode_verdict, plain_allow_encoder
from service.rules.loader import load_pack
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir

FETCH_RECORDS = 5000  # REDLINE_BATCH_MAX_RECORDS' default
MIB = 1024 * 1024


def per_event_path(engine: Engine, raw: Sequence[bytes]) -> list[bytes]:
    return [encode_verdict(engine.classify(decode_event(record), NOW)) for record in raw]


def _encoded(engine: Engine, verdicts: Sequence[Verdict]) -> list[bytes]:
    encode_allow = plain_allow_encoder(engine.ruleset, NOW)
    return [encode_verdict(v) if v.matches else encode_allow(v.event_id) for v in verdicts]


def batch_path(
    engine: Engine, raw: Sequence[bytes], fetch: int = FETCH_RECORDS, slice_chars: int = SLICE_CHARS
) -> list[bytes]:
    out: list[bytes] = []
    for first in range(0, len(raw), fetch):
        events = [decode_event(record) for record in raw[first : first + fetch]]
        verdicts: list[Verdict] = []
        for part in slices_by_chars(events, slice_chars):
            verdicts.extend(engine.classify_batch(events[part.start : part.stop], NOW))
        out.extend(_encoded(engine, verdicts))
    return out


def _each(call: Callable[[Any], object], items: Sequence[Any]) -> list[object]:
    """`call` on each item: a benchmark body over pre-built batches, bound with partial."""
    return [call(item) for item in items]


def _cpu_us(count: int, body: Callable[[], object]) -> float:
    started = time.process_time()
    body()
    return (time.process_time() - started) / count * 1e6


def alternate(runs: int, count: int, bodies: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median CPU µs per item of each body, the bodies alternating within each run."""
    samples: dict[str, list[float]] = {label: [] for label in bodies}
    for _ in range(runs):
        for label, body in bodies.items():
            samples[label].append(_cpu_us(count, body))
    return {label: round(statistics.median(values), 2) for label, values in samples.items()}


def paths(engine: Engine, raw: Sequence[bytes], runs: int) -> dict[str, float]:
    assert batch_path(engine, raw) == per_event_path(engine, raw)  # the same bytes, or no figure
    costs = alternate(runs, len(raw), {
        "per event": lambda: per_event_path(engine, raw),
        "batch": lambda: batch_path(engine, raw),
    })
    costs["per event / batch"] = round(costs["per event"] / costs["batch"], 2)
    return costs


def batch_sizes(engine: Engine, raw: Sequence[bytes], runs: int) -> dict[str, dict[str, float]]:
    """decode + one unsliced classify_batch + encode per batch of each size."""
    out: dict[str, dict[str, float]] = {}
    for size in (100, 1_000, 5_000, 20_000):
        chunk = list(raw[: max(size, 20_000 // size * size)])  # ~20k events in batches of `size`
        costs = alternate(runs, len(chunk), {
            "batch": partial(batch_path, engine, chunk, fetch=size, slice_chars=1 << 62),
            "per event": partial(per_event_path, engine, chunk),
        })
        out[str(size)] = costs
    return out


def small_batches(engine: Engine, raw: Sequence[bytes], runs: int) -> dict[str, dict[str, float]]:
    """classify only, ~10k sample events in batches of a few events: the batch machinery forced
    (`per_event_below=0`) against one by one, what `PER_EVENT_BELOW` is chosen from."""
    events = [decode_event(record) for record in raw[:10_000]]
    out: dict[str, dict[str, float]] = {}
    for size in (2, 5, 10, 20, 30, 50, 100):
        chunks = [events[i : i + size] for i in range(0, len(events), size)]
        out[str(size)] = alternate(runs, len(events), {
            "batch machinery": partial(_each, partial(engine.classify_batch, now=NOW, per_event_below=0), chunks),
            "one by one": lambda: [engine.classify(event, NOW) for event in events],
        })
    return out


def chat_text(length: int, rng: random.Random, traffic: SampleTraffic) -> str:
    text = ""
    while len(text) < length:
        text += str(traffic.event(NOW).get("text") or "") + rng.choice(("，", " ", "。"))
    return text[:length]


def text_lengths(engine: Engine, runs: int) -> dict[str, dict[str, float]]:
    """classify only, text events of one length, in batches of at most 64 Ki characters."""
    rng = random.Random(3)
    traffic = SampleTraffic(11, malformed_ratio=0.0)
    out: dict[str, dict[str, float]] = {}
    for length in (10, 100, 1_000, 10_000, 100_000):
        count = max(20, 200_000 // length)
        events = [ChatEvent(id=str(i), text=chat_text(length, rng, traffic)) for i in range(count)]
        slices = [events[p.start : p.stop] for p in slices_by_chars(events, SLICE_CHARS)]
        costs = alternate(runs, count, {
            "batch": partial(_each, partial(engine.classify_batch, now=NOW), slices),
            "per event": partial(_each, partial(engine.classify, now=NOW), events),
        })
        costs["batch ns per char"] = round(costs["batch"] / length * 1000, 1)
        out[str(length)] = costs
    return out


def tail(engine: Engine, raw: Sequence[bytes], runs: int) -> dict[str, float]:
    """A fetch of 5,000 sample events with one 1 MiB chat text in its middle: what the huge text
    adds to the others' wait (sliced as the stream does, and in one unsliced call) against its
    own cost alone. CPU ms for the whole batch."""
    events = [decode_event(record) for record in raw[:FETCH_RECORDS]]
    huge = ChatEvent(id="huge", text=chat_text(MIB, random.Random(5), SampleTraffic(13, malformed_ratio=0.0)))
    middle = len(events) // 2
    with_huge = [*events[:middle], huge, *events[middle:]]

    def sliced(batch: list[ChatEvent]) -> None:
        for part in slices_by_chars(batch, SLICE_CHARS):
            engine.classify_batch(batch[part.start : part.stop], NOW)

    ms = alternate(runs, 1000, {  # a count of 1000: ms per call
        "others alone, sliced": lambda: sliced(events),
        "huge text alone (classify)": lambda: engine.classify(huge, NOW),
        "others + huge, sliced": lambda: sliced(with_huge),
        "others + huge, one call": lambda: engine.classify_batch(with_huge, NOW),
    })
    ms["added by the huge text, sliced"] = round(ms["others + huge, sliced"] - ms["others alone, sliced"], 2)
    ms["added by the huge text, one call"] = round(ms["others + huge, one call"] - ms["others alone, sliced"], 2)
    return ms


def without_hits(engine: Engine, raw: Sequence[bytes]) -> list[bytes]:
    """The records whose events nothing fires on (the engine's own batch findings)."""
    events = [decode_event(record) for record in raw]
    plan = plan_channels(engine.channels, engine.triggers)
    findings = find_batch(events, plan, len(engine.channels), engine.untriggered, engine.scored)
    return [
        record for record, candidates, scans in zip(raw, findings.candidates, findings.scans, strict=True)
        if candidates is None and scans is None
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rules", type=Path, default=None, help="pack to measure (default: the bundled pack)")
    parser.add_argument("--only", default="paths,sizes,small,lengths,tail", help="comma-separated sections")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    engine = load_pack(args.rules or bundled_rules_dir())
    raw = sample_events(args.events)
    batch_path(engine, raw[:2000])  # warm caches and scratch
    clean = without_hits(engine, raw)
    gc.collect()
    gc.freeze()  # as `redline serve` does with the loaded pack
    result: dict[str, object] = {"pack": f"{engine.ruleset.name} {engine.ruleset.version}", "runs": args.runs}
    if "paths" in sections:
        result["decode+classify+encode, µs per event, sample mix"] = paths(engine, raw, args.runs)
        result[f"decode+classify+encode, µs per event, clean ({len(clean)} events of the mix, no hit)"] = paths(
            engine, clean, args.runs
        )
    if "sizes" in sections:
        result["batch size, decode+classify+encode µs per event (one unsliced call per batch)"] = batch_sizes(
            engine, raw, args.runs
        )
    if "small" in sections:
        result["small batches, classify µs per event"] = small_batches(engine, raw, args.runs)
    if "lengths" in sections:
        result["text length, classify µs per event"] = text_lengths(engine, args.runs)
    if "tail" in sections:
        result["tail: 5,000 sample events + one 1 MiB text, CPU ms per batch"] = tail(engine, raw, args.runs)
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
