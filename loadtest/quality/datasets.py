"""The labelled evaluation sets, read with their real column names.

COLD: `label_offensive` 0/1; its test subset (`cold/cold_test_4000.jsonl`, the file the figures
report on) also has `fine_grained` 0 safe, 1 attacks a person, 2 attacks a group, 3 safe
anti-bias. The dev file (`cold_dev.jsonl`, no fine-grained labels: groups "offensive"/"safe") is
read only to measure a layer before it is turned on (`load_cold(..., split="dev")`, layers.py);
the train file never. SWSR (`swsr/*.jsonl`): `label_sexist` 0/1, `category` (SO sexual offence,
MA, SCB, SA; null when not sexist).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

COLD_GROUPS = {0: "safe", 1: "attack_person", 2: "attack_group", 3: "safe_anti_bias"}


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    text: str
    positive: bool  # offensive (COLD) / sexist (SWSR)
    group: str  # COLD fine_grained name; SWSR category or "non_sexist"


COLD_TEST = "cold_test_4000.jsonl"
COLD_DEV = "cold_dev.jsonl"
COLD_TRAIN = "cold_train.jsonl"


def _lines(directory: Path, pattern: str = "*.jsonl") -> Iterator[dict[str, object]]:
    for path in sorted(directory.glob(pattern)):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)


def load_cold(data: Path, limit: int | None = None, split: str = "test") -> list[Row]:
    rows = []
    for record in _lines(data / "cold", {"test": COLD_TEST, "dev": COLD_DEV, "train": COLD_TRAIN}[split]):
        offensive = record["label_offensive"] == 1
        fine = record.get("fine_grained")
        group = COLD_GROUPS[int(str(fine))] if fine is not None else ("offensive" if offensive else "safe")
        rows.append(Row(str(record["id"]), str(record["text"]), offensive, group))
    return _spread(rows, limit)


def load_swsr(data: Path, limit: int | None = None) -> list[Row]:
    rows = []
    for record in _lines(data / "swsr"):
        sexist = record["label_sexist"] == 1
        group = str(record["category"]) if sexist and record.get("category") else "non_sexist"
        rows.append(Row(str(record["id"]), str(record["text"]), sexist, group))
    return _spread(rows, limit)


def _spread(rows: list[Row], limit: int | None) -> list[Row]:
    """Every k-th row, so a small slice still holds every label (the files are grouped by label)."""
    if limit is None or limit >= len(rows):
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]
