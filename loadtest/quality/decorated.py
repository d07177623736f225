"""False positives of emoji decoration, on COLD *train + dev*: the inoffensive rows with an emoji
after about one character in seven (`model_robustness.decorate`), classified by a pack, and the
share its keyword rules flag (matches a model took part in are left out), as they are and decorated.

    python -m loadtest.quality.decorated --data DIR [--split dev|train|train+dev] [--rules PACK]

Emoji between the characters of ordinary words must not read as the characters of a term: the
stand-in views read emoji as characters of their names (docs/quality.md, "Evasion layers").
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from loadtest.quality.datasets import load_cold
from loadtest.quality.model_robustness import decorate
from loadtest.quality.scoring import acted_by_keywords, classify_texts
from service.engine.classifier import Engine
from service.rules.loader import load_pack
from service.settings import bundled_rules_dir


def keyword_rules(engine: Engine, texts: list[tuple[str, str]]) -> list[list[str]]:
    """Per text, the rules acting on it without a model's part."""
    verdicts = classify_texts(engine, texts)
    return [
        [m.rule for m in acted_by_keywords(v)] for v in verdicts
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.quality.decorated", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="evaluation data directory (COLD train and dev)")
    parser.add_argument("--split", default="train+dev", choices=("dev", "train", "train+dev"), help="COLD rows to read")
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    args = parser.parse_args(argv)
    rows = [r for split in args.split.split("+") for r in load_cold(args.data, split=split) if not r.positive]
    engine = load_pack(args.rules)
    plain = keyword_rules(engine, [(r.id, r.text) for r in rows])
    decorated = keyword_rules(engine, [(r.id, decorate(r.text)) for r in rows])
    out = {
        "rows": len(rows),
        "flagged": sum(map(bool, plain)),
        "flagged_decorated": sum(map(bool, decorated)),
        "decorated_by_rule": dict(collections.Counter(rule for rules in decorated for rule in rules).most_common()),
    }
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
