"""The Markdown table of the chart's values, made from the `# --` comments of values.yaml.

    python helm/values_table.py           # print it
    python helm/values_table.py --write   # replace the table in helm/redline/README.md

The table sits between the BEGIN/END markers of the chart README; tests/deploy/test_chart_docs.py
fails when it differs from what this script makes.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "redline"
VALUES = CHART / "values.yaml"
README = CHART / "README.md"
BEGIN = "<!-- BEGIN values table: python helm/values_table.py --write -->"
END = "<!-- END values table -->"
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


def table() -> str:
    header = "| value | default | meaning |\n|---|---|---|\n"
    return header + "\n".join(rows(VALUES.read_text(encoding="utf-8"))) + "\n"


def with_table(readme: str) -> str:
    """`readme` with the text between the markers replaced by the current table."""
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + table() + readme[end:]


def main() -> None:
    if sys.argv[1:] == ["--write"]:
        README.write_text(with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        sys.stdout.write(table())


if __name__ == "__main__":
    main()
