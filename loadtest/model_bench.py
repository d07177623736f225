"""Cost of the learned stage: the default pack's text model alone and inside the engine.

    .venv/bin/python -m loadtest.model_bench [--runs 7] [--events 20000]

Prints one JSON line (CPU µs per event, `time.process_time`, median and min of `--runs`):
- `score_single`: `NgramModel.score` one text at a time (what one `/check` adds);
- `score_batch_5000` / `score_batch_500`: `score_batch` over batches of that size (the entry
  point for a stream batch, per event);
- `classify_with_model` / `classify_without_model`: `Engine.classify` per event, the default
  pack as shipped and a copy without its `models:` and the rules that use them, and the
  difference (the learned stage on the per-event path: single `/check`);
- `classify_batch_with_model` / `classify_batch_without_model`: `Engine.classify_batch` over
  batches of 5,000 events (what a stream fetch is decided by), and the difference (the learned
  stage on the stream, amortised);
- `learned_stage_short_lines`: the same difference as `learned_stage_per_event` on short chat
  lines alone (好的, 收到, 👍, ok: fewer characters than the model rules' `min_chars`);
- the model's file size and the resident size of its weights and view tables.
The events are the sample traffic of `redline dev` (loadtest/engine_bench.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from loadtest.engine_bench import NOW, sample_events
from service.engine.model_score import ModelScore
from service.engine.textmodel import NgramModel
from service.events import ChatEvent, decode_event
from service.rules.loader import load_pack
from service.settings import bundled_rules_dir

# Work chat's acknowledgements: too short for the default pack's model rules (min_chars 3).
SHORT_LINES = ("好的", "收到", "👍", "ok")


def _each(call: Callable[[Any], object], items: Sequence[Any]) -> list[object]:
    """`call` on each item: a benchmark body over pre-built batches, bound with partial."""
    return [call(item) for item in items]


def _cpu_us(runs: int, count: int, body: Callable[[], object]) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.process_time()
        body()
        samples.append((time.process_time() - started) / count * 1e6)
    return {"median": round(statistics.median(samples), 2), "min": round(min(samples), 2)}


def without_models(pack: Path, into: Path) -> Path:
    """A copy of `pack` without `models:` and without the rules whose conditions name a model."""
    import shutil

    shutil.copytree(pack, into)
    document = yaml.safe_load((into / "pack.yaml").read_text(encoding="utf-8"))
    document.pop("models", None)
    (into / "pack.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    for path in (into / "rules").glob("*.yaml"):
        rules = yaml.safe_load(path.read_text(encoding="utf-8"))
        rules["rules"] = [r for r in rules["rules"] if "classifier" not in json.dumps(r["when"], ensure_ascii=False)]
        path.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    return into


def _model_of(engine: object) -> NgramModel:
    for rule in engine.rules:  # type: ignore[attr-defined]
        stack = [rule.condition]
        while stack:
            node = stack.pop()
            if isinstance(node, ModelScore):
                return node.model
            stack.extend(getattr(node, "children", ()))
    raise SystemExit("the pack has no model rule")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.model_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    args = parser.parse_args(argv)
    events = [decode_event(raw) for raw in sample_events(args.events)]
    texts = [event.text for event in events]
    with_model = load_pack(args.rules)
    model = _model_of(with_model)
    with tempfile.TemporaryDirectory() as scratch:
        without = load_pack(without_models(args.rules, Path(scratch) / "pack"))
    gc.collect()
    gc.freeze()  # as `redline serve` and its stream processes do once the pack is loaded
    n = len(events)
    out: dict[str, object] = {
        "events": n,
        "mean_text_chars": round(sum(map(len, texts)) / n, 1),
        "score_single": _cpu_us(args.runs, n, lambda: [model.score(t) for t in texts]),
    }
    for size in (5000, 500):
        batches = [texts[i : i + size] for i in range(0, n, size)]
        out[f"score_batch_{size}"] = _cpu_us(args.runs, n, partial(_each, model.score_batch, batches))
    classify_with = _cpu_us(args.runs, n, lambda: [with_model.classify(e, NOW) for e in events])
    classify_without = _cpu_us(args.runs, n, lambda: [without.classify(e, NOW) for e in events])
    out["classify_with_model"] = classify_with
    out["classify_without_model"] = classify_without
    out["learned_stage_per_event"] = round(classify_with["median"] - classify_without["median"], 2)
    short = [ChatEvent(id=f"s{i}", text=text) for i in range(n // 4) for text in SHORT_LINES]
    short_with = _cpu_us(args.runs, len(short), lambda: [with_model.classify(e, NOW) for e in short])
    short_without = _cpu_us(args.runs, len(short), lambda: [without.classify(e, NOW) for e in short])
    out["learned_stage_short_lines"] = round(short_with["median"] - short_without["median"], 2)
    fetches = [events[i : i + 5000] for i in range(0, n, 5000)]
    batch_with = _cpu_us(args.runs, n, lambda: [with_model.classify_batch(f, NOW) for f in fetches])
    batch_without = _cpu_us(args.runs, n, lambda: [without.classify_batch(f, NOW) for f in fetches])
    out["classify_batch_with_model"] = batch_with
    out["classify_batch_without_model"] = batch_without
    out["learned_stage_per_event_batch"] = round(batch_with["median"] - batch_without["median"], 2)
    manifest = yaml.safe_load((args.rules / "models" / f"{model.name}.yaml").read_text(encoding="utf-8"))
    weights_file = args.rules / "models" / manifest["weights"]
    out["model_file_bytes"] = weights_file.stat().st_size
    out["weights_resident_bytes"] = int(model.weights.nbytes)
    out["view_tables"] = len(model.views)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
