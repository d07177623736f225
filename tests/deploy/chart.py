"""Rendering the chart offline with helm-python-sdk (Helm's own Go engine; no cluster, no helm binary)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.deploy.tools import CHART, CI_VALUES

RELEASE = "redline"
NAMESPACE = "moderation"


def ci_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(CI_VALUES.read_text(encoding="utf-8"))
    return values


@cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path → rendered text, as `helm template` would write it."""
    return _chart().render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt excluded)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def validate_schema(values: dict[str, Any]) -> None:
    _chart().validate_schema(values)


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return helm.lint(Path(CHART), values or {}, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
