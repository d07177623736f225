"""`redline train`: deterministic, reads labelled JSON lines, keeps held-out texts out of training,
chooses thresholds on dev by false-positive rate, and writes a pack-loadable model and its card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.cli import main as redline
from service.training.augment import cloaked
from service.training.choose import at_fpr, roc_auc
from service.training.data import DataError, read
from tests.rules.model_pack import ROWS, write_rows

ARGS = ["--label", "label", "--name", "toxic", "--licence", "Apache-2.0", "--source", "test rows",
        "--bits", "10", "--max-order", "2", "--epochs", "40"]


def _train(tmp_path: Path, output: str, *extra: str) -> Path:
    rows = write_rows(tmp_path / "rows.jsonl")
    test = write_rows(tmp_path / "test.jsonl", [*ROWS[:2], ("完全没见过的一句话", 0)])
    out = tmp_path / output
    assert redline(["train", "--train", str(rows), "--dev", str(rows), "--test", str(test),
                    "--output", str(out), *ARGS, *extra]) == 0
    return out


def test_training_is_deterministic_and_writes_model_and_card(tmp_path: Path) -> None:
    first = _train(tmp_path, "a")
    second = _train(tmp_path, "b")
    for name in ("toxic.yaml", "toxic.weights"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    card = (first / "toxic.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in card
    assert "sha256" in card
    assert "chosen on dev only" in card
    # The two test rows also in training were dropped from it (and reported).
    assert "2 rows dropped because their text is in a held-out file" in card
    assert "redline train" in card


def test_augmented_training_differs_and_stays_deterministic(tmp_path: Path) -> None:
    plain = _train(tmp_path, "plain")
    augmented = _train(tmp_path, "aug", "--augment", "1")
    again = _train(tmp_path, "aug2", "--augment", "1")
    assert (augmented / "toxic.weights").read_bytes() == (again / "toxic.weights").read_bytes()
    assert (augmented / "toxic.weights").read_bytes() != (plain / "toxic.weights").read_bytes()
    assert cloaked("你妈的", 1, 1.0) != "你妈的"
    assert cloaked("你妈的", 1, 1.0) == cloaked("你妈的", 1, 1.0)


def test_threshold_flags_at_most_the_allowed_share_of_negatives() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.95, 0.97, 0.5, 0.6, 0.99])
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 0, 0, 1], dtype=np.int8)  # 7 negatives, highest 0.9
    threshold = at_fpr(scores, labels, 0.15)  # one negative may pass
    assert threshold == pytest.approx(0.601)
    assert ((scores >= threshold) & (labels == 0)).sum() == 1
    assert roc_auc(scores, labels) == 1.0  # every positive above every negative
    assert roc_auc(np.array([0.1, 0.8, 0.7]), np.array([0, 0, 1], dtype=np.int8)) == 0.5


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "a", "label": 1}) + "\n" + json.dumps({"text": "b"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: needs a JSON object with 'text' and 'label'"):
        read(path, "text", "label")
    assert redline(["train", "--train", str(path), "--dev", str(path), "--output", str(tmp_path / "o"), *ARGS]) == 2
