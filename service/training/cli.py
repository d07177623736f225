"""`redline train`: fit a pack text model from labelled JSON lines and write it with its card.

    redline train --train TRAIN.jsonl --dev DEV.jsonl [--test TEST.jsonl] --label LABEL_KEY \\
                  --name NAME --output DIR --licence SPDX --source "where the data comes from"

Rows of the training and dev files whose text is also in a `--test` file are dropped, so a
reported test figure is never on seen text. Thresholds are chosen on dev only (`--review-fpr`,
`--block-fpr`: the share of dev negatives each may flag). Exit 0, or 2 when the data is unusable.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.engine.textmodel import NgramModel
from service.rules.models import text_model
from service.rules.tables import MODEL_VIEWS, model_view_table
from service.training import card as cards
from service.training.augment import cloaked
from service.training.choose import at_fpr, figures, roc_auc
from service.training.data import DataError, Labelled, read, texts_of
from service.training.fit import Settings, fit


def add_parser(commands: Any) -> None:
    """Register `train` on the CLI's subparsers (`commands` is argparse's subparsers action)."""
    _arguments(commands.add_parser("train", help="train a pack text model from labelled JSON lines"))


def _arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument("--train", type=Path, required=True, help="training rows (JSON lines)")
    parser.add_argument("--dev", type=Path, required=True, help="dev rows: thresholds are chosen here")
    parser.add_argument("--test", type=Path, action="append", default=[],
                        help="reported only, never used to choose (repeatable); its texts are dropped from training")
    parser.add_argument("--text", default="text", help="text key (default: text)")
    parser.add_argument("--label", required=True, help="0/1 label key")
    parser.add_argument("--group", help="a key to report flagged shares by (e.g. fine_grained)")
    parser.add_argument("--name", required=True, help="model name (as declared in pack.yaml)")
    parser.add_argument("--output", type=Path, required=True, help="directory for NAME.yaml, NAME.weights, NAME.md")
    parser.add_argument("--licence", required=True, help="licence of the training data (SPDX id)")
    parser.add_argument("--source", required=True, help="where the training data comes from (for the card)")
    parser.add_argument("--views", default=",".join(defaults.views), help=f"comma-separated of {MODEL_VIEWS}")
    parser.add_argument("--max-order", type=int, default=defaults.max_order)
    parser.add_argument("--bits", type=int, default=defaults.bits, help="log2 of the hashed feature buckets")
    parser.add_argument("--l2", type=float, default=defaults.l2)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--augment", type=int, default=0,
                        help="cloaked copies of each training row (fold-half substitutions; default 0)")
    parser.add_argument("--augment-share", type=float, default=0.2,
                        help="share of a copy's substitutable characters that are substituted (default 0.2)")
    parser.add_argument("--review-fpr", type=float, default=0.02, help="dev negatives the review threshold may flag")
    parser.add_argument("--block-fpr", type=float, default=0.002, help="dev negatives the block threshold may flag")


def run(args: argparse.Namespace, command: str) -> int:
    started = time.perf_counter()
    views = tuple(v.strip() for v in args.views.split(",") if v.strip())
    unknown = [v for v in views if v not in MODEL_VIEWS]
    if unknown or not views:
        print(f"unknown views {unknown}; choose from {MODEL_VIEWS}", file=sys.stderr)
        return 2
    settings = Settings(views, args.max_order, args.bits, args.l2, args.epochs, args.learning_rate,
                        args.augment, args.augment_share)
    try:
        held_out = texts_of(args.test, args.text)
        train = read(args.train, args.text, args.label, exclude=held_out)
        dev = read(args.dev, args.text, args.label, args.group, exclude=held_out)
        tests = [read(path, args.text, args.label, args.group) for path in args.test]
    except (OSError, DataError) as exc:
        print(exc, file=sys.stderr)
        return 2
    tables = tuple(model_view_table(view) for view in views)
    void = np.zeros(1 << settings.bits, dtype=np.float32)
    texts, labels = train.texts, train.labels
    if args.augment:
        texts = texts + [cloaked(text, copy, args.augment_share) for copy in range(1, args.augment + 1)
                         for text in train.texts]
        labels = np.tile(train.labels, args.augment + 1)
    fitted = fit(NgramModel(args.name, tables, settings.max_order, settings.bits, void, 0.0), texts, labels, settings)
    data = cards.weights_bytes(fitted.weights)
    # Thresholds and figures come from the model as it ships (float16 weights).
    weights = np.frombuffer(data, dtype="<f2").astype(np.float32)
    model = text_model(args.name, views, settings.max_order, settings.bits, weights, fitted.bias)
    dev_scores = model.score_batch(dev.texts)
    rates = {"review": args.review_fpr, "block": args.block_fpr}
    thresholds = {label: at_fpr(dev_scores, dev.labels, rate) for label, rate in rates.items()}
    evaluations = [_evaluate("dev", dev, dev_scores, thresholds)]
    for path, test in zip(args.test, tests, strict=True):
        evaluations.append(_evaluate(f"test {path.name}", test, model.score_batch(test.texts), thresholds))
    seconds = time.perf_counter() - started
    card = cards.render_card(args.name, settings, args.licence, args.source, command, train, evaluations,
                             thresholds, rates, len(data), seconds)
    for path in cards.write(args.output, args.name, settings, data, fitted.bias, thresholds, card):
        print(f"wrote {path}")
    for evaluation in evaluations:
        for label, fig in evaluation.at.items():
            precision = "—" if fig.precision is None else f"{fig.precision:.3f}"
            print(f"{evaluation.name}: AUC {evaluation.auc:.3f}; {label} ≥ {fig.threshold:.3f}: precision "
                  f"{precision}, recall {fig.recall:.3f}, false-positive rate {fig.false_positive_rate:.3f}")
    return 0


def _evaluate(
    name: str, data: Labelled, scores: np.ndarray[Any, Any], thresholds: dict[str, float]
) -> cards.Evaluation:
    at = {label: figures(scores, data.labels, threshold, data.groups) for label, threshold in thresholds.items()}
    return cards.Evaluation(name, data, roc_auc(scores, data.labels), at)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.training", description=__doc__.splitlines()[0])
    _arguments(parser)
    arguments = list(sys.argv[1:] if argv is None else argv)
    return run(parser.parse_args(arguments), "redline train " + shlex.join(arguments))
