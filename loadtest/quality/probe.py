"""Paraphrases of the red lines and ordinary work chat (English, Chinese), classified by a pack:
per set (tuning, held out), the offending messages flagged (review or block) under their red line
and the ordinary messages flagged at all, each miss and false positive listed.

    python -m loadtest.quality.probe [--rules PACK] [--probes FILE ...]

The messages are in loadtest/quality/probes/ (english.yaml, chinese.yaml; by default both), each
file saying how its sets were written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from loadtest.quality.scoring import acted, classify_texts
from service.engine.classifier import Engine
from service.rules.loader import load_pack
from service.settings import bundled_rules_dir

PROBE_FILES = sorted((Path(__file__).parent / "probes").glob("*.yaml"))


def probe_sets(path: Path) -> dict[str, dict[str, list[Any]]]:
    """A probe file's sets by name, each with its `offending` items and `ordinary` messages."""
    sets: dict[str, dict[str, list[Any]]] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.quality.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    parser.add_argument("--probes", type=Path, nargs="+", default=PROBE_FILES)
    args = parser.parse_args(argv)
    engine = load_pack(args.rules)
    for path in args.probes:
        _report(engine, path)
    return 0


def _report(engine: Engine, path: Path) -> None:
    for name, probe in probe_sets(path).items():
        offending = probe["offending"]
        ordinary = probe["ordinary"]
        verdicts = classify_texts(engine, [(f"o{i}", item["text"]) for i, item in enumerate(offending)])
        caught = [
            any(m.category == item["category"] for m in acted(verdict))
            for item, verdict in zip(offending, verdicts, strict=True)
        ]
        safe = classify_texts(engine, [(f"s{i}", text) for i, text in enumerate(ordinary)])
        flagged = [bool(acted(verdict)) for verdict in safe]
        print(
            f"{path.stem} {name}: offending flagged under their red line {sum(caught)}/{len(caught)}"
            f" ({sum(caught) / len(caught):.0%}); ordinary flagged {sum(flagged)}/{len(flagged)}"
        )
        for item, hit in zip(offending, caught, strict=True):
            if not hit:
                print(f"  missed [{item['category']}] {item['text']}")
        for text, verdict, hit in zip(ordinary, safe, flagged, strict=True):
            if hit:
                print(f"  flagged [{', '.join(m.rule for m in acted(verdict))}] {text}")


if __name__ == "__main__":
    sys.exit(main())
