"""The documentation stands on its own: no pointer to files users do not have, and no dead link.

- Nothing under docs/, rules/ or helm/ names the development notes (DESIGN.md, STYLE.md) or the
  machine's shared folder: a user's clone has neither.
- Every relative Markdown link there (and in the top-level README) leads to a file of the
  repository, and a `#fragment` to a heading of that file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.docs.markdown import markdown_anchors, relative_links

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("docs", "rules", "helm")
OUTSIDE = re.compile(r"DESIGN\.md|STYLE\.md|/work/shared|\.\./shared")


def _tracked(*roots: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", *roots], cwd=REPO, capture_output=True, check=True)
    return [REPO / name for name in listed.stdout.decode().split("\0") if name and (REPO / name).is_file()]


def _markdown() -> list[Path]:
    files = {p for p in _tracked(*ROOTS) if p.suffix == ".md"}
    files |= {p for root in ROOTS for p in (REPO / root).rglob("*.md")}  # new files not yet added too
    return sorted(files | {REPO / "README.md"})


def test_no_pointer_to_files_outside_the_repository() -> None:
    files = set(_tracked(*ROOTS)) | {p for root in ROOTS for p in (REPO / root).rglob("*") if p.is_file()}
    found = []
    for path in sorted(files):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary data (images)
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert found == []
    assert OUTSIDE.search("see DESIGN.md") and OUTSIDE.search("--data /work/shared/eval")


@pytest.mark.parametrize("path", _markdown(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in markdown_anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.relative_to(REPO)}")
    assert broken == []


def test_the_link_checker_sees_dead_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n## Two words\n[a](#two-words) [b](missing.md) [c](#nope) [d](https://x.test)\n"
                    "```\n[e](in-code.md)\n```\n", encoding="utf-8")
    assert relative_links(page) == ["#two-words", "missing.md", "#nope"]
    assert markdown_anchors(page) == {"title", "two-words"}
