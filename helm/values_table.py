"""Print the Markdown table of the chart's values from the `# --` comments of values.yaml.

    python helm/values_table.py   # paste into docs/deploy.md, section "Values"

tests/deploy/test_chart.py fails when a documented value is missing from docs/deploy.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

VALUES = Path(__file__).resolve().parent / "redline" / "values.yaml"
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):")


def rows(text: str) -> list[str]:
    values: Any = yaml.safe_load(text)
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    out: list[str] = []
    for number, line in enumerate(lines):
        match = _KEY.match(line)
        if not match:
            continue
        while stack and stack[-1][0] >= len(match.group(1)):
            stack.pop()
        stack.append((len(match.group(1)), match.group(2)))
        block: list[str] = []
        above = number - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            block.insert(0, lines[above].strip())
            above -= 1
        start = next((i for i, b in enumerate(block) if b.startswith("# --")), None)
        if start is None:
            continue
        doc = " ".join([block[start][4:].strip()] + [b[1:].strip() for b in block[start + 1:]])
        value = values
        for _, key in stack:
            value = value[key]
        default = json.dumps(value, ensure_ascii=False)
        if len(default) > 60:
            default = "see values.yaml"
        path = ".".join(k for _, k in stack)
        out.append(f"| `{path}` | `{default}` | {doc.replace('|', chr(92) + '|')} |")
    return out


def main() -> None:
    print("| value | default | meaning |\n|---|---|---|")
    print("\n".join(rows(VALUES.read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main()
