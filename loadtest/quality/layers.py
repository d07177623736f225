"""False positives each evasion layer adds, measured on COLD *dev* and *train* (never the test
subset) before a layer is turned on in a pack or for a rule.

    python -m loadtest.quality.layers --data DIR [--split dev|train|train+dev] [--rules PACK] [--json PATH]

For each variant of the pack's `normalize:` (homophones off; on; + stand_ins; + near_homophones;
+ initials; + split_characters)
it loads a copy of the pack with that setting for every rule (a rule's own override of these
layers is removed, its examples are not run), classifies every COLD row of the split, and prints
the flagged share of the safe rows (label 0) and of the offensive rows, per rule the rows each
variant adds over the one before (safe and offensive: which rules a layer costs false positives
in), and which safe rows each variant adds (with rule and evidence).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from loadtest.quality.datasets import Row, load_cold
from loadtest.quality.scoring import acted_by_keywords, classify_texts
from service.rules.loader import load_pack_report
from service.settings import bundled_rules_dir

# The variants in the order each layer was added: each turns on the layers of the one before and
# its own, for every rule (the name, the layer it adds).
_STEPS: tuple[tuple[str, str | None], ...] = (
    ("homophones off", None),
    ("homophones", "homophones"),
    ("+ stand_ins (emoji)", "stand_ins"),
    ("+ near_homophones", "near_homophones"),
    ("+ initials", "initials"),
    ("+ split_characters", "split_characters"),
)
_LAYERS = tuple(layer for _, layer in _STEPS if layer is not None)
VARIANTS: dict[str, dict[str, bool]] = {
    name: {layer: index <= step for index, layer in enumerate(_LAYERS, start=1)}
    for step, (name, _) in enumerate(_STEPS)
}


@dataclass
class Variant:
    name: str
    flagged_safe: set[str]
    flagged_offensive: set[str]
    evidence: dict[str, str]
    rules: dict[str, set[str]]  # row id → the rules that flag it


def measure(data: Path, rules: Path, limit: int | None = None, split: str = "dev") -> tuple[list[Row], list[Variant]]:
    rows = [
        Row(f"{part}:{r.id}", r.text, r.positive, r.group)
        for part in split.split("+")
        for r in load_cold(data, limit, split=part)
    ]
    results: list[Variant] = []
    for name, layers in VARIANTS.items():
        with tempfile.TemporaryDirectory() as scratch:
            pack = Path(scratch) / "pack"
            shutil.copytree(rules, pack)
            document = yaml.safe_load((pack / "pack.yaml").read_text(encoding="utf-8"))
            document.setdefault("normalize", {}).update(layers)
            (pack / "pack.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
            _without_rule_overrides(pack, document, set(layers))
            engine = load_pack_report(pack, check_examples=False).engine
        verdicts = classify_texts(engine, ((r.id, r.text) for r in rows))
        variant = Variant(name, set(), set(), {}, {})
        for row, verdict in zip(rows, verdicts, strict=True):
            # The layers' own effect: matches a learned model took part in are left out.
            matches = acted_by_keywords(verdict)
            if not matches:
                continue
            (variant.flagged_offensive if row.positive else variant.flagged_safe).add(row.id)
            variant.evidence[row.id] = "; ".join(f"{m.rule} {[e.text for e in m.evidence]}" for m in matches)
            variant.rules[row.id] = {m.rule for m in matches}
        results.append(variant)
    return rows, results


def _without_rule_overrides(pack: Path, document: dict[str, object], layers: set[str]) -> None:
    """Remove the rules' own settings of `layers`, so a variant applies to every rule."""
    patterns = document.get("rules", ["rules/*.yaml"])
    for pattern in patterns if isinstance(patterns, list) else []:
        for path in sorted(pack.glob(str(pattern))):
            rules = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for rule in rules.get("rules", []):
                own = rule.get("normalize")
                if isinstance(own, dict):
                    for layer in layers:
                        own.pop(layer, None)
            path.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")


def render(rows: list[Row], variants: list[Variant]) -> str:
    safe = sum(not r.positive for r in rows)
    offensive = len(rows) - safe
    text = {r.id: r.text for r in rows}
    lines = [
        f"| layers | safe rows flagged (of {safe}) | offensive rows flagged (of {offensive}) | safe rows added |",
        "|---|---:|---:|---:|",
    ]
    previous: Variant | None = None
    listing: list[str] = []
    for variant in variants:
        added = variant.flagged_safe - (previous.flagged_safe if previous else set())
        safe_share = 100 * len(variant.flagged_safe) / safe
        offensive_share = 100 * len(variant.flagged_offensive) / offensive
        lines.append(
            f"| {variant.name} | {len(variant.flagged_safe)} ({safe_share:.2f}%) | "
            f"{len(variant.flagged_offensive)} ({offensive_share:.2f}%) | {len(added) if previous else '—'} |"
        )
        if previous:
            for row_id in sorted(added):
                listing.append(f"- {variant.name}: {variant.evidence[row_id]} :: {text[row_id][:70]!r}")
        previous = variant
    return (
        "\n".join(lines)
        + "\n\n"
        + per_rule(variants)
        + "\n\nSafe rows each layer adds:\n"
        + ("\n".join(listing) or "(none)")
        + "\n"
    )


def per_rule(variants: list[Variant]) -> str:
    """Per rule, the safe / offensive rows each variant flags through it that the variant before
    did not flag through it."""
    lines = ["| layer | rule | safe rows added | offensive rows added |", "|---|---|---:|---:|"]
    for previous, variant in itertools.pairwise(variants):
        added: dict[str, list[int]] = {}
        for row_id, rules in variant.rules.items():
            for rule in rules - previous.rules.get(row_id, set()):
                counts = added.setdefault(rule, [0, 0])
                counts[row_id in variant.flagged_offensive] += 1
        for rule, (safe, offensive) in sorted(added.items()):
            lines.append(f"| {variant.name} | {rule} | {safe} | {offensive} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.quality.layers", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="evaluation data directory (COLD dev is read)")
    parser.add_argument("--split", default="dev", choices=("dev", "train", "train+dev"), help="COLD rows to read")
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows, variants = measure(args.data, args.rules, args.limit, args.split)
    sys.stdout.write(render(rows, variants))
    if args.json:
        found = {v.name: {"safe": sorted(v.flagged_safe), "offensive": sorted(v.flagged_offensive)} for v in variants}
        args.json.write_text(json.dumps(found, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
