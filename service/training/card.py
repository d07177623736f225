"""What `redline train` writes: the weights (float16), the manifest a pack declares, the card."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml

from service.rules.models import FORMAT_VERSION
from service.training.choose import Figures
from service.training.data import Labelled
from service.training.fit import Settings


@dataclass(frozen=True)
class Evaluation:
    name: str  # "dev", "test …"
    data: Labelled
    auc: float
    at: dict[str, Figures]  # threshold name → figures


def weights_bytes(weights: npt.NDArray[np.float64]) -> bytes:
    return weights.astype("<f2").tobytes()


def write(output: Path, name: str, settings: Settings, data: bytes, bias: float, thresholds: dict[str, float],
          card: str) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    weights_path = output / f"{name}.weights"
    manifest_path = output / f"{name}.yaml"
    card_path = output / f"{name}.md"
    weights_path.write_bytes(data)
    manifest = {
        "format": "redline-ngram-linear",
        "version": FORMAT_VERSION,
        "name": name,
        "views": list(settings.views),
        "max_order": settings.max_order,
        "bits": settings.bits,
        "weights": weights_path.name,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "bias": round(float(bias), 9),
        "thresholds": thresholds,
        "card": card_path.name,
    }
    header = (f"# Text model `{name}` for Redline packs, written by `redline train` (service/training).\n"
              f"# Model card: {card_path.name}. "
              f"Declare it in pack.yaml: models: {{{name}: <dir>/{manifest_path.name}}}\n")
    manifest_path.write_text(header + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True), encoding="utf-8")
    card_path.write_text(card, encoding="utf-8")
    return [manifest_path, weights_path, card_path]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def render_card(name: str, settings: Settings, licence: str, source: str, command: str, train: Labelled,
                evaluations: list[Evaluation], thresholds: dict[str, float], rates: dict[str, float],
                weights_size: int, seconds: float) -> str:
    lines = [
        f"# Model card: `{name}`",
        "",
        "A linear model over hashed character n-grams (service/engine/textmodel.py), trained by",
        "`redline train`. It gives a score in [0, 1]; a rule decides what a score means",
        "(`classifier: {model: " + name + ", min_score: …}`).",
        "",
        "## Data",
        "",
        f"- Source and licence: {source} — **{licence}**. Weights derived from it ship under that licence.",
        f"- Training: `{train.path.name}` sha256 `{train.sha256}`, {len(train.texts)} rows "
        f"({train.positives} positive), {train.dropped} rows dropped because their text is in a held-out file.",
    ]
    for evaluation in evaluations:
        data = evaluation.data
        lines.append(f"- {evaluation.name}: `{data.path.name}` sha256 `{data.sha256}`, {len(data.texts)} rows "
                     f"({data.positives} positive)" + (f", {data.dropped} dropped" if data.dropped else "") + ".")
    lines += [
        "",
        "## Features and fit",
        "",
        f"- Views: {', '.join(settings.views)}; n-grams of 1 to {settings.max_order} characters, hashed into "
        f"2^{settings.bits} buckets; weights stored as float16 ({weights_size / 1024 / 1024:.1f} MiB).",
        f"- Logistic regression, L2 {settings.l2:g}, full-batch Adam, {settings.epochs} epochs, learning rate "
        f"{settings.learning_rate:g}; deterministic. Training took {seconds:.0f} s here.",
        f"- Augmentation: {settings.augment} cloaked {'copy' if settings.augment == 1 else 'copies'} of each row, "
        f"{100 * settings.augment_share:.0f}% of its substitutable hanzi written as a homophone, near-homophone or "
        "emoji from the fold halves of the substitution tables (the robustness suite uses the held-out halves)."
        if settings.augment else "- Augmentation: none.",
        "",
        "## Thresholds (chosen on dev only)",
        "",
    ]
    for label, threshold in thresholds.items():
        lines.append(f"- `{label}`: {threshold:.3f} — the lowest score that flags at most "
                     f"{100 * rates[label]:.1f}% of the dev negatives.")
    lines += ["", "## Figures", "", "| data | AUC | threshold | flagged | precision | recall | false-positive rate |",
              "|---|---:|---|---:|---:|---:|---:|"]
    for evaluation in evaluations:
        for label, fig in evaluation.at.items():
            lines.append(f"| {evaluation.name} | {evaluation.auc:.3f} | {label} {fig.threshold:.3f} | {fig.flagged} | "
                         f"{_pct(fig.precision)} | {_pct(fig.recall)} | {_pct(fig.false_positive_rate)} |")
    grouped = [(e, label, fig) for e in evaluations for label, fig in e.at.items() if fig.by_group]
    if grouped:
        lines += ["", "Flagged share by group:", "",
                  "| data | threshold | group | flagged / rows |", "|---|---|---|---:|"]
        for evaluation, label, fig in grouped:
            for group, (flagged, rows) in fig.by_group.items():
                lines.append(f"| {evaluation.name} | {label} | {group} | {flagged} / {rows} ({_pct(flagged / rows)}) |")
    lines += [
        "",
        "Test figures are reported, never used to choose anything.",
        "",
        "## Reproduce",
        "",
        "```",
        command,
        "```",
        "",
        "## Limits",
        "",
        "- It reads characters, not meaning: sarcasm, context and new slang it has not seen are missed,",
        "  and text that *quotes* offensive words to criticise them scores high too.",
        "- Its figures hold for text like its training data; calibrate thresholds on your own",
        "  labelled moderation decisions (`redline train` takes any JSON lines with a text and a 0/1 label).",
        "",
    ]
    return "\n".join(lines)
