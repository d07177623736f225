"""What the evasion layers cost: classifier time per event with every layer on vs every layer off.

    .venv/bin/python -m loadtest.engine_layers_bench                 # ~2 min
    .venv/bin/python -m loadtest.engine_layers_bench --quick         # smoke check
    .venv/bin/python -m loadtest.engine_layers_bench --false-positives   # + benign-word hits per layer

Same run, same pack (the bundled one unless `--rules`), same events: the pack is copied twice with
`normalize:` set to all layers on (homophones included) and all off; runs alternate between the
two engines so drift on this shared 2-core machine hits both alike. Events are the mixed sample
traffic plus evasive rewrites of risky messages (the share is `--evasive`).

Then a pack of 10k real Chinese words (pypinyin's phrase dictionary) is loaded in fresh
processes with all layers on and off: load time, Hyperscan compile time, pattern count, RSS.

`--false-positives` needs the optional `wordfreq` package (the `bench` extra): it classifies the 50k most frequent
Chinese and English words one by one under each layer alone and counts words that hit only
because of that layer (a word-level estimate of what each layer adds to false positives).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from service.engine.classifier import Engine
from service.events import ChatEvent, event_from_object
from service.rules.loader import load_pack_report
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TEXT_LAYERS = ("width", "case", "invisible", "separators", "traditional", "homophones")
KEYWORD_LAYERS = ("leet", "pinyin", "emoji")
ALL_LAYERS = TEXT_LAYERS + KEYWORD_LAYERS

# Evasive rewrites the layers exist for; {} marks where a keyword of the pack goes.
_EVASIONS: tuple[Callable[[str], str], ...] = (
    lambda t: "\u200b".join(t),  # zero-width between characters
    lambda t: " ".join(t),  # spaced out
    lambda t: "*".join(t),
    lambda t: t.translate(str.maketrans("oisae", "0!$@3")),  # leet (Latin keywords)
)
_EVASIVE_TEXTS = (
    "有人要机 密文件吗", "這份是機密文件", "发🧧给你，选我", "hongbao 已经发了", "你个沙比", "dai gou 日本化妆品",
    "薇商招代理", "ｆｕｌｌ－ｗｉｄｔｈ porn", "p0rn links here", "you 1d10t", "红*包拿好", "加我v信 微 商",
)


def layered_copy(source: Path, target: Path, on: bool) -> Path:
    shutil.copytree(source, target)
    pack_file = target / "pack.yaml"
    pack = yaml.safe_load(pack_file.read_text(encoding="utf-8"))
    pack["normalize"] = {layer: on for layer in ALL_LAYERS}
    pack_file.write_text(json.dumps(pack, ensure_ascii=False, default=str), encoding="utf-8")
    return target


def sample_events(count: int, evasive_share: float, seed: int = 7) -> list[ChatEvent]:
    traffic = SampleTraffic(seed, malformed_ratio=0.0)
    rng = random.Random(seed)
    events: list[ChatEvent] = []
    for i in range(count):
        if rng.random() < evasive_share:
            text = rng.choice(_EVASIVE_TEXTS)
            if rng.random() < 0.3:
                text = rng.choice(_EVASIONS)(text)
            events.append(ChatEvent(id=f"e{i}", text=text))
        else:
            events.append(event_from_object(traffic.event(NOW)))
    return events


def per_event_us(engine: Engine, events: Sequence[ChatEvent]) -> float:
    started = time.perf_counter()
    engine.classify_batch(events, NOW)
    return (time.perf_counter() - started) / len(events) * 1e6


def cost_ratio(rules: Path, count: int, runs: int, evasive_share: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engines = {
            label: load_pack_report(layered_copy(rules, Path(tmp) / label, on), check_examples=False).engine
            for label, on in (("all layers on", True), ("all layers off", False))
        }
    events = sample_events(count, evasive_share)
    for engine in engines.values():
        engine.classify_batch(events[:1000], NOW)  # warm caches and scratch
    samples: dict[str, list[float]] = {label: [] for label in engines}
    for _ in range(runs):
        for label, engine in engines.items():
            samples[label].append(per_event_us(engine, events))
    print(f"pack {rules} — {count} events ({evasive_share:.0%} evasive), {runs} alternating runs, µs/event")
    medians = {}
    for label, values in samples.items():
        medians[label] = statistics.median(values)
        patterns = sum(len(c.matcher.patterns) for c in engines[label].channels)
        print(f"  {label:<16} median {medians[label]:6.2f}  (min {min(values):.2f}, max {max(values):.2f}), "
              f"{len(engines[label].channels)} channels, {patterns} patterns")
    print(f"  ratio on/off: {medians['all layers on'] / medians['all layers off']:.2f}x  (target ≤ 2x)")


def chinese_words(count: int) -> list[str]:
    """Real 2–4 character words, spread over pypinyin's phrase dictionary (deterministic)."""
    from pypinyin.phrases_dict import phrases_dict

    words = sorted(w for w in phrases_dict if 2 <= len(w) <= 4 and all("\u4e00" <= ch <= "\u9fff" for ch in w))
    step = max(1, len(words) // count)
    return words[::step][:count]


def write_keyword_pack(directory: Path, words: Sequence[str], on: bool) -> None:
    (directory / "lexicons").mkdir(parents=True)
    (directory / "rules").mkdir()
    shards = 10
    for shard in range(shards):
        (directory / "lexicons" / f"k{shard}.txt").write_text("\n".join(words[shard::shards]) + "\n", "utf-8")
    pack = {
        "name": "words", "version": "1", "categories": {"generated": {"description": "generated"}},
        "lexicons": {f"k{s}": f"lexicons/k{s}.txt" for s in range(shards)},
        "normalize": {layer: on for layer in ALL_LAYERS},
    }
    rules = [
        {
            "id": f"words.k{shard}", "category": "generated", "severity": "medium", "action": "review",
            "when": {"keywords": {"lexicons": [f"k{shard}"]}},
            "examples": {"match": [f"前缀 {words[shard]} 后缀"], "no_match": ["0000"]},
        }
        for shard in range(shards)
    ]
    (directory / "pack.yaml").write_text(json.dumps(pack, ensure_ascii=False), encoding="utf-8")
    (directory / "rules" / "words.yaml").write_text(json.dumps({"rules": rules}, ensure_ascii=False), "utf-8")


_MEASURE = """
import json, resource, sys, time
from pathlib import Path
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
before = rss()
from service.engine.matcher import FieldMatcher
from service.rules.loader import load_pack
started = time.perf_counter()
engine = load_pack(Path(sys.argv[1]))
load = time.perf_counter() - started
compile_seconds = 0.0
for channel in engine.channels:
    started = time.perf_counter()
    FieldMatcher(channel.matcher.patterns)
    compile_seconds += time.perf_counter() - started
print(json.dumps({"load_seconds": load, "compile_seconds": compile_seconds, "rss_mib": rss(),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "patterns": sum(len(c.matcher.patterns) for c in engine.channels)}))
"""


def keyword_pack_costs(count: int, runs: int) -> None:
    words = chinese_words(count)
    print(f"\n{len(words)} Chinese keywords (pypinyin phrases), fresh process per load, median of {runs}:")
    with tempfile.TemporaryDirectory() as tmp:
        for label, on in (("all layers on", True), ("all layers off", False)):
            directory = Path(tmp) / label.replace(" ", "_")
            write_keyword_pack(directory, words, on)
            results = []
            for _ in range(runs):
                done = subprocess.run([sys.executable, "-c", _MEASURE, str(directory)],
                                      capture_output=True, text=True, check=True)
                results.append(json.loads(done.stdout))
            median = {key: statistics.median(r[key] for r in results) for key in results[0]}
            print(f"  {label:<16} load+examples {median['load_seconds']:.2f} s, Hyperscan+RE2 compile "
                  f"{median['compile_seconds']:.2f} s, {median['patterns']:.0f} patterns, "
                  f"RSS {median['rss_mib']:.0f} MiB (peak {median['peak_rss_mib']:.0f} MiB)")


def _keyword_terms(rules: Path) -> list[str]:
    pack = yaml.safe_load((rules / "pack.yaml").read_text(encoding="utf-8"))
    terms: list[str] = []
    for relative in pack.get("lexicons", {}).values():
        for line in (rules / relative).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                terms.append(line)
    return sorted(set(terms))


def false_positives(rules: Path, top: int) -> None:
    try:
        import wordfreq
    except ImportError:
        print("\n--false-positives needs `pip install -e '.[bench]'` (wordfreq)")
        return
    terms = _keyword_terms(rules)
    corpus = {lang: wordfreq.top_n_list(lang, top) for lang in ("zh", "en")}
    frequency = {lang: wordfreq.get_frequency_dict(lang) for lang in corpus}
    configs: dict[str, dict[str, Any]] = {"none": {}}
    for layer in ("leet", "pinyin", "emoji", "homophones"):
        configs[layer] = {layer: True}
    print(f"\nbenign-word hits: {len(terms)} lexicon terms of {rules}, top {top} words per language "
          "(wordfreq); hits only the layer causes, and their share of running text by frequency")
    with tempfile.TemporaryDirectory() as tmp:
        hit_sets: dict[str, dict[str, set[str]]] = {}
        for label, enabled in configs.items():
            directory = Path(tmp) / label
            (directory / "rules").mkdir(parents=True)
            (directory / "lexicons").mkdir()
            (directory / "lexicons" / "all.txt").write_text("\n".join(terms) + "\n", "utf-8")
            normalize = {layer: False for layer in ALL_LAYERS if layer not in TEXT_LAYERS[:5]} | enabled
            pack = {"name": "fp", "version": "1", "categories": {"c": {"description": "c"}},
                    "lexicons": {"all": "lexicons/all.txt"}, "normalize": normalize}
            rule = {"id": "fp.all", "category": "c", "severity": "low", "action": "review",
                    "when": {"keywords": {"lexicons": ["all"]}},
                    "examples": {"match": [terms[0]], "no_match": ["0000"]}}
            (directory / "pack.yaml").write_text(json.dumps(pack, ensure_ascii=False), "utf-8")
            (directory / "rules" / "r.yaml").write_text(json.dumps({"rules": [rule]}, ensure_ascii=False), "utf-8")
            engine = load_pack_report(directory, check_examples=False).engine
            hit_sets[label] = {
                lang: {w for w in words if engine.classify(ChatEvent(id="w", text=w), NOW).matches}
                for lang, words in corpus.items()
            }
    for label in configs:
        if label == "none":
            continue
        for lang in corpus:
            freq = frequency[lang]
            extra = sorted(hit_sets[label][lang] - hit_sets["none"][lang], key=lambda w: -freq.get(w, 0.0))
            share = sum(freq.get(w, 0.0) for w in extra)
            print(f"  {label:<11} {lang}: {len(extra):4d} words ({share * 1e6:7.1f} per million words), "
                  f"e.g. {' '.join(extra[:8])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=Path, default=None, help="pack (default: the bundled pack)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--evasive", type=float, default=0.1, help="share of evasive messages")
    parser.add_argument("--keywords", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="5k events, 3 runs, 1 load per pack")
    parser.add_argument("--false-positives", action="store_true")
    parser.add_argument("--top-words", type=int, default=50_000)
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs = 5_000, 3
    rules = args.rules or bundled_rules_dir()
    cost_ratio(rules, args.events, args.runs, args.evasive)
    keyword_pack_costs(args.keywords, 1 if args.quick else 3)
    if args.false_positives:
        false_positives(rules, args.top_words)


if __name__ == "__main__":
    main()
