"""Fuzzing the pack loader: whatever the rule file holds, the result is an engine or a PackError."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import PackError
from service.rules.loader import load_pack

MINI = Path(__file__).resolve().parent.parent / "packs" / "mini"

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=12) | st.sampled_from(
    ["机密", "(a)\\1", "a*", "[", "review", "block", "text", "secret_leak", "all", "any", "not"]
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(
        st.sampled_from(["id", "category", "severity", "action", "when", "examples", "match", "no_match",
                         "keywords", "regex", "all", "any", "not", "near", "a", "b", "within", "unless",
                         "terms", "lexicons", "type", "calendar", "payment", "min", "max"]),
        children,
        max_size=5,
    ),
    max_leaves=25,
)


@settings(max_examples=120, deadline=None)
@given(rules=st.lists(values, max_size=3), raw_text=st.text(max_size=80))
def test_loader_refuses_cleanly(rules: list[object], raw_text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pack = Path(tmp) / "p"
        shutil.copytree(MINI, pack)
        (pack / "rules" / "main.yaml").write_text(yaml.safe_dump({"rules": rules}, allow_unicode=True), "utf-8")
        (pack / "rules" / "raw.yaml").write_text(raw_text, encoding="utf-8")
        try:
            load_pack(pack)
        except PackError as exc:
            assert exc.issues
            assert all(issue.file and issue.message for issue in exc.issues)
