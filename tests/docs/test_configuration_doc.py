"""docs/configuration.md lists every setting of service/settings.py, with its true default and bounds.

Adding a field to `Settings` without a row (or leaving a row for a removed one) fails here, and so
does a default or a bound that changed in the code but not in the table.
"""

from __future__ import annotations

import re
import typing
from functools import cache
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo

from service.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ROW = re.compile(r"^\|\s*`REDLINE_([A-Z0-9_]+)`\s*\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|$")
# Defaults that depend on where Redline is installed, described in words instead of a value.
DESCRIBED_DEFAULTS = {"rules"}
# Type words a row may use for each Python type (a `str` may hold a list, a path or one of fixed words).
TYPE_WORDS = {
    bool: {"boolean"}, int: {"integer"}, float: {"number"}, Path: {"path"},
    str: {"string", "list", "path", "enum"},
}


def documented_rows(text: str) -> dict[str, tuple[str, str, str, str]]:
    """Setting name (lower case) → (type, default, allowed, meaning) of each table row."""
    rows: dict[str, tuple[str, str, str, str]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match is None:
            assert not line.startswith("| `REDLINE_"), f"malformed row: {line}"
            continue
        name = match.group(1).lower()
        assert name not in rows, f"REDLINE_{name.upper()} is listed twice"
        rows[name] = tuple(cell.strip() for cell in match.group(2, 3, 4, 5))  # type: ignore[assignment]
    return rows


@cache
def rows_of_the_doc() -> dict[str, tuple[str, str, str, str]]:
    return documented_rows(DOC.read_text(encoding="utf-8"))


def test_every_setting_has_a_row_and_every_row_a_setting() -> None:
    fields = set(Settings.model_fields)
    missing = sorted(f"REDLINE_{name.upper()}" for name in fields - set(rows_of_the_doc()))
    stale = sorted(f"REDLINE_{name.upper()}" for name in set(rows_of_the_doc()) - fields)
    assert missing == [], f"add these to docs/configuration.md: {missing}"
    assert stale == [], f"these are not settings any more: {stale}"


def _constraints(annotation: Any, metadata: list[Any]) -> tuple[list[Any], list[Any], set[type]]:
    """(bounds, literal choices, base types) of a field, looking inside Annotated, unions and Field()."""
    bounds = [m for m in metadata if isinstance(m, annotated_types.BaseMetadata)]
    choices: list[Any] = []
    types: set[type] = set()
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices.extend(typing.get_args(annotation))
    elif origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        inner: list[Any] = []
        for item in extra:
            inner.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        b, c, t = _constraints(base, inner)
        bounds, choices, types = bounds + b, choices + c, types | t
    elif origin is not None:  # a union
        for arg in typing.get_args(annotation):
            b, c, t = _constraints(arg, [])
            bounds, choices, types = bounds + b, choices + c, types | t
    elif isinstance(annotation, type):
        types.add(annotation)
    return bounds, choices, types


def _bound_text(bound: Any) -> str:
    for attribute, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if hasattr(bound, attribute):
            return f"{sign} {getattr(bound, attribute)}"
    if getattr(bound, "min_length", None) == 1:
        return "not empty"
    raise AssertionError(f"unexpected constraint {bound!r}")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_row_states_the_settings_type_default_and_bounds(name: str) -> None:
    rows = rows_of_the_doc()
    if name not in rows:
        pytest.skip("reported by test_every_setting_has_a_row_and_every_row_a_setting")
    kind, default, allowed, meaning = rows[name]
    field = Settings.model_fields[name]
    bounds, choices, types = _constraints(field.annotation, list(field.metadata))
    assert meaning.endswith((".", ")")), f"REDLINE_{name.upper()}: say what it does"
    # the type word fits the annotation
    words = set(re.split(r" or ", kind))
    if choices:
        assert "enum" in words, f"REDLINE_{name.upper()} takes only {choices}: type 'enum'"
    for base in types:
        assert words & TYPE_WORDS.get(base, {base.__name__}), f"REDLINE_{name.upper()}: {base.__name__} is not {kind}"
    # every bound and every choice of the code is stated
    for bound in bounds:
        stated = re.search(re.escape(_bound_text(bound)) + r"(?![0-9.])", allowed)
        assert stated, f"REDLINE_{name.upper()}: '{_bound_text(bound)}' missing from {allowed!r}"
    for choice in choices:
        assert f"`{choice}`" in allowed, f"REDLINE_{name.upper()}: `{choice}` missing from {allowed!r}"
    # the default is the code's, read the way the environment value would be
    literal = re.fullmatch(r"`([^`]*)`", default)
    if literal is None:
        assert name in DESCRIBED_DEFAULTS, f"REDLINE_{name.upper()}: give the default as a `value`"
        return
    value = "" if literal.group(1) == '""' else literal.group(1)
    parsed = TypeAdapter(field.rebuild_annotation()).validate_python(value)
    assert parsed == field.get_default(call_default_factory=True), f"REDLINE_{name.upper()}: default {default}"


def test_the_row_parser_sees_gaps() -> None:
    rows = documented_rows("| `REDLINE_X` | integer | `1` | ≥ 1 | Something. |\n| other | table |\n")
    assert rows == {"x": ("integer", "`1`", "≥ 1", "Something.")}
    with pytest.raises(AssertionError, match="malformed"):
        documented_rows("| `REDLINE_X` | integer | `1` |\n")
