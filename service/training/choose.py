"""Thresholds chosen on dev data, and the figures of a model at a threshold.

A threshold is chosen by the false-positive rate it allows on the dev set's negative rows: unlike
precision, that rate does not depend on how many positives a stream carries, so it carries over
to traffic with another mix. `at_fpr` returns the lowest score (rounded up to 3 decimals) that
flags at most that share of dev negatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Figures:
    threshold: float
    flagged: int
    precision: float | None
    recall: float
    false_positive_rate: float
    by_group: dict[str, tuple[int, int]]  # group → (flagged, rows)


def at_fpr(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8], rate: float) -> float:
    negatives = np.sort(scores[labels == 0])[::-1]
    allowed = math.floor(rate * len(negatives))
    if allowed >= len(negatives):
        return 0.0
    # Flag scores above the (allowed+1)-th highest negative: at most `allowed` negatives pass.
    return min(1.0, math.floor(float(negatives[allowed]) * 1000 + 1) / 1000)


def figures(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8], threshold: float,
            groups: list[str] | None = None) -> Figures:
    flagged = scores >= threshold
    positives = labels == 1
    true_positive = int((flagged & positives).sum())
    count = int(flagged.sum())
    negatives = int((~positives).sum())
    by_group: dict[str, tuple[int, int]] = {}
    if groups and any(groups):
        for group in sorted(set(groups)):
            members = np.array([g == group for g in groups])
            by_group[group] = (int((flagged & members).sum()), int(members.sum()))
    return Figures(
        threshold,
        count,
        true_positive / count if count else None,
        true_positive / int(positives.sum()) if positives.any() else 0.0,
        int((flagged & ~positives).sum()) / negatives if negatives else 0.0,
        by_group,
    )


def roc_auc(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    positives = labels == 1
    n_pos = int(positives.sum())
    n_neg = len(labels) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
