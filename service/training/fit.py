"""Fit the linear model's weights: L2-regularised logistic regression over hashed n-gram counts,
full-batch Adam for a fixed number of epochs.

Deterministic: no sampling, no threads of its own; the same data, settings and numpy give the
same weights bit for bit (bincount sums in a fixed order). Features come from
`NgramModel.features`, so training and serving read text the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.engine.textmodel import NgramModel


@dataclass(frozen=True)
class Settings:
    views: tuple[str, ...] = ("plain", "homophones")
    max_order: int = 3
    bits: int = 19
    l2: float = 3e-6
    epochs: int = 300
    learning_rate: float = 0.05
    augment: int = 0  # cloaked copies per training row (service/training/augment.py)
    augment_share: float = 0.2


@dataclass(frozen=True)
class Fitted:
    weights: npt.NDArray[np.float64]  # 2^bits
    bias: float


def fit(template: NgramModel, texts: list[str], labels: npt.NDArray[np.int8], settings: Settings) -> Fitted:
    """Weights for `template`'s features (its own weights are ignored)."""
    buckets, owners = template.features(texts)
    size = 1 << template.bits
    rows = len(texts)
    counts = np.bincount(owners, minlength=rows).astype(np.float64)
    scale = 1.0 / np.sqrt(np.maximum(counts, 1.0))  # as NgramModel: Σ weights / sqrt(n-grams)
    target = labels.astype(np.float64)
    weights = np.zeros(size)
    bias = 0.0
    first = np.zeros(size)
    second = np.zeros(size)
    first_bias = second_bias = 0.0
    beta1, beta2, epsilon = 0.9, 0.999, 1e-8
    for step in range(1, settings.epochs + 1):
        margins = bias + np.bincount(owners, weights=weights[buckets], minlength=rows) * scale
        error = (1.0 / (1.0 + np.exp(-margins)) - target) / rows
        gradient = np.bincount(buckets, weights=(error * scale)[owners], minlength=size) + settings.l2 * weights
        gradient_bias = float(error.sum())
        first = beta1 * first + (1 - beta1) * gradient
        second = beta2 * second + (1 - beta2) * gradient * gradient
        step_size = settings.learning_rate / (1 - beta1**step)
        weights -= step_size * first / (np.sqrt(second / (1 - beta2**step)) + epsilon)
        first_bias = beta1 * first_bias + (1 - beta1) * gradient_bias
        second_bias = beta2 * second_bias + (1 - beta2) * gradient_bias**2
        bias -= settings.learning_rate * (first_bias / (1 - beta1**step)) / (
            np.sqrt(second_bias / (1 - beta2**step)) + epsilon
        )
    return Fitted(weights, float(bias))
