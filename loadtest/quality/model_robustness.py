"""Robustness of a text model alone on COLD *dev* (how the default model was chosen).

    python -m loadtest.quality.model_robustness --data DIR --model rules/redlines/models/offensive_zh.yaml

Scores every `--every`-th COLD dev row, keeps those the model flags at its manifest's review
threshold, rewrites the spans its evidence names (the heaviest n-grams) with each perturbation
kind (held-out substitution tables, loadtest/quality/perturb.py) and prints, per kind, the share
still flagged; and the model's recall and false-positive rate on those dev rows.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import zlib
from pathlib import Path

import numpy as np
import yaml

from loadtest.quality import perturb
from loadtest.quality.datasets import load_cold
from service.engine.textmodel import NgramModel
from service.rules.tables import model_emoji_readings, model_spellings, model_view_table

KINDS = ("homophones", "near_homophones", "emoji", "multi_character", "pinyin_joined", "separators_emoji")


def load_model(manifest_path: Path) -> tuple[NgramModel, float]:
    manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
    data = (manifest_path.parent / manifest["weights"]).read_bytes()
    weights = np.frombuffer(data, dtype="<f2").astype(np.float32)
    views = tuple(model_view_table(view) for view in manifest["views"])
    model = NgramModel(manifest["name"], views, manifest["max_order"], manifest["bits"], weights, manifest["bias"],
                       model_emoji_readings(), model_spellings())
    return model, float(manifest["thresholds"]["review"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.quality.model_robustness",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="evaluation data directory (COLD dev is read)")
    parser.add_argument("--model", type=Path, required=True, help="the model's manifest")
    parser.add_argument("--every", type=int, default=3, help="score every k-th dev row (default 3)")
    args = parser.parse_args(argv)
    model, threshold = load_model(args.model)
    rows = load_cold(args.data, split="dev")[:: args.every]
    scores = model.score_batch([row.text for row in rows])
    labels = np.array([row.positive for row in rows])
    flagged = [row.text for row, score in zip(rows, scores, strict=True) if score >= threshold]
    out: dict[str, object] = {
        "rows": len(rows), "flagged": len(flagged), "threshold": threshold,
        "recall": round(float((scores[labels] >= threshold).mean()), 3),
        "false_positive_rate": round(float((scores[~labels] >= threshold).mean()), 3),
    }
    for kind in KINDS:
        kept = applicable = 0
        for text in flagged:
            _, spans = model.contributions(text)
            rng = random.Random(zlib.crc32(f"{kind}\0{text}".encode()))
            rewritten, _ = perturb.rewrite(text, [(s.start, s.end) for s in spans], perturb.KINDS[kind], rng)
            if rewritten == text:
                continue
            applicable += 1
            kept += model.score(rewritten) >= threshold
        rate = round(kept / applicable, 3) if applicable else None
        out[kind] = {"kept": kept, "applicable": applicable, "rate": rate}
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
