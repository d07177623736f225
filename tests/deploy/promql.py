"""Metric names referenced by a PromQL expression, without a full parser.

Good enough for the expressions this repository writes (tested in test_promql.py): strings, label
matchers, ranges and grouping clauses are removed first; an identifier left over is a metric name
unless a function call or a keyword. Grafana's `$variables` are substituted with values that keep
the expression valid PromQL, so the same text can also be sent to a real Prometheus.
"""

from __future__ import annotations

import re
from typing import Final

_KEYWORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
     "offset", "inf", "nan", "atan2"}
)
_GRAFANA_DURATIONS: Final = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h", "__range_s": "3600"}
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def substitute_grafana(expr: str) -> str:
    """Replace Grafana's variables: durations with durations, template variables with `.*`."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return _GRAFANA_DURATIONS.get(name, ".*")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, expr)


def metric_names(expr: str) -> set[str]:
    text = substitute_grafana(expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(0)
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":
            continue  # the exponent or unit of a number: 1e-05, 5m
        if text[match.end():].lstrip().startswith("("):
            continue  # a function call
        if name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def exposed_names(exposition: str) -> dict[str, str]:
    """Every series name a text exposition can produce → its family's type (from `# TYPE` lines)."""
    names: dict[str, str] = {}
    for line in exposition.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, family, kind = line.split(maxsplit=3)
        if kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[family + suffix] = kind
        elif kind == "summary":
            for suffix in ("", "_sum", "_count"):
                names[family + suffix] = kind
        else:
            names[family] = kind
    return names
