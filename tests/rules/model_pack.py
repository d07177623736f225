"""A small pack with a text model trained here in a second (tests of models and `classifier`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from service.engine.textmodel import NgramModel
from service.rules.tables import model_view_table
from service.training import card
from service.training.fit import Settings, fit

# Offensive (1) and ordinary (0) work-chat lines; enough for a tiny model to tell them apart.
ROWS = [
    *[(f"{who}就是个废物，{verb}", 1) for who in ("你", "他", "这人", "那家伙") for verb in ("滚", "闭嘴", "真恶心")],
    *[(f"{who}明天{what}", 0) for who in ("我们", "大家", "老王", "小李") for what in ("开会", "交材料", "出差")],
]
SETTINGS = Settings(views=("plain", "homophones"), max_order=2, bits=10, epochs=200, learning_rate=0.3)


def write_rows(path: Path, rows: list[tuple[str, int]] = ROWS) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows),
                    encoding="utf-8")
    return path


def train_model(directory: Path, name: str = "toxic", *, flipped: bool = False) -> Path:
    """NAME.yaml, NAME.weights and NAME.md in `directory`; the manifest's path is returned.
    `flipped` trains on the opposite labels (another model, for reload tests)."""
    tables = tuple(model_view_table(view) for view in SETTINGS.views)
    template = NgramModel(name, tables, SETTINGS.max_order, SETTINGS.bits, np.zeros(1 << SETTINGS.bits, np.float32), 0)
    texts = [text for text, _ in ROWS]
    labels = np.array([1 - label if flipped else label for _, label in ROWS], dtype=np.int8)
    fitted = fit(template, texts, labels, SETTINGS)
    data = card.weights_bytes(fitted.weights)
    card.write(directory, name, SETTINGS, data, fitted.bias, {"review": 0.5}, "# card\n")
    return directory / f"{name}.yaml"


PACK = """\
name: modelled
version: "1"
categories:
  improper_remarks: {description: insults}
models:
  toxic: models/toxic.yaml
"""

RULES = """\
rules:
  - id: improper_remarks.model
    category: improper_remarks
    severity: medium
    action: review
    when:
      classifier: {model: toxic, min_score: 0.5}
    examples:
      match: [你就是个废物，滚]
      no_match: [大家明天开会]
"""


def model_pack(root: Path, rules: str = RULES) -> Path:
    pack = root / "pack"
    (pack / "rules").mkdir(parents=True)
    (pack / "pack.yaml").write_text(PACK, encoding="utf-8")
    (pack / "rules" / "main.yaml").write_text(rules, encoding="utf-8")
    train_model(pack / "models")
    return pack


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
