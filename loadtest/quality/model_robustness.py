"""Robustness of a text model alone on COLD *dev* (how the default model was chosen).

    python -m loadtest.quality.model_robustness --data DIR --model rules/redlines/models/offensive_zh.yaml

Scores every `--every`-th COLD dev row, keeps those the model flags at its manifest's review
threshold, rewrites the spans its evidence names (the heaviest n-grams) with each perturbation
kind (held-out substitution tables, loadtest/quality/perturb.py) and prints, per kind, the share
still flagged; the model's recall and false-positive rate on those dev rows; and the share of
dev's inoffensive rows (all of them) flagged as they are and *decorated*: an emoji inserted after
about one character in seven, as people decorate chat — what reading emoji as characters costs.
`--emoji-word-min-count` scores with another support for the contextual emoji reading (how
MODEL_EMOJI_WORD_MIN_COUNT was chosen; 0 turns that reading off).
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
from service.rules.models import text_model
from service.rules.tables import MODEL_EMOJI_WORD_MIN_COUNT

KINDS = (
    "homophones", "near_homophones", "emoji", "multi_character", "pinyin_joined", "pinyin_spaced", "pinyin_initials",
    "emoji_names", "separators_emoji", "split_characters",
)


DECORATION_SHARE = 0.15


def load_model(manifest_path: Path, emoji_word_min_count: int = MODEL_EMOJI_WORD_MIN_COUNT) -> tuple[NgramModel, float]:
    manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
    data = (manifest_path.parent / manifest["weights"]).read_bytes()
    weights = np.frombuffer(data, dtype="<f2").astype(np.float32)
    model = text_model(manifest["name"], tuple(manifest["views"]), manifest["max_order"], manifest["bits"], weights,
                       float(manifest["bias"]), emoji_word_min_count=emoji_word_min_count)
    return model, float(manifest["thresholds"]["review"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.quality.model_robustness",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="evaluation data directory (COLD dev is read)")
    parser.add_argument("--model", type=Path, required=True, help="the model's manifest")
    parser.add_argument("--every", type=int, default=3, help="score every k-th dev row (default 3)")
    parser.add_argument("--emoji-word-min-count", type=int, default=MODEL_EMOJI_WORD_MIN_COUNT,
                        help=f"support of the contextual emoji reading (default {MODEL_EMOJI_WORD_MIN_COUNT}; 0: off)")
    args = parser.parse_args(argv)
    model, threshold = load_model(args.model, args.emoji_word_min_count)
    dev = load_cold(args.data, split="dev")
    rows = dev[:: args.every]
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
    inoffensive = [row.text for row in dev if not row.positive]
    decorated = [decorate(text) for text in inoffensive]
    out["inoffensive_flagged"] = round(float((model.score_batch(inoffensive) >= threshold).mean()), 4)
    out["decorated_flagged"] = round(float((model.score_batch(decorated) >= threshold).mean()), 4)
    print(json.dumps(out, ensure_ascii=False))
    return 0


def decorate(text: str) -> str:
    """`text` with an emoji (any, drawn per text) after about DECORATION_SHARE of its characters."""
    rng = random.Random(zlib.crc32(text.encode()))
    pool = perturb.separator_emoji()
    out: list[str] = []
    for char in text:
        out.append(char)
        if rng.random() < DECORATION_SHARE:
            out.append(rng.choice(pool))
    return "".join(out)


if __name__ == "__main__":
    sys.exit(main())
