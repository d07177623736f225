"""Compile a `classifier` condition (schema.ClassifierSpec) into its engine node."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from service.engine.model_score import ModelScore
from service.engine.textmodel import NgramModel
from service.errors import PackIssue
from service.rules import schema as s


def compile_classifier(
    spec: s.ClassifierSpec,
    models: Mapping[str, NgramModel],
    declared: Collection[str],
    path: str,
    locate: Callable[[str, str], PackIssue],
    issues: list[PackIssue],
) -> ModelScore | None:
    """The node, or None with the problem in `issues` (a declared model that failed to load was
    reported where it failed)."""
    model = models.get(spec.model)
    if model is None:
        if spec.model not in declared:
            issues.append(locate(f"{path}.model", f"unknown model {spec.model!r} (declare it in pack.yaml `models:`)"))
        return None
    if spec.below is not None and spec.below <= spec.min_score:
        issues.append(locate(f"{path}.below", f"below {spec.below} must be above min_score {spec.min_score}"))
        return None
    return ModelScore(model, spec.field, spec.min_score, spec.below, spec.min_chars)
