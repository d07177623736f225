"""The matcher: spans per pattern, boundaries checked exactly after a boundary-free prefilter."""

from __future__ import annotations

import pytest

from service.engine.matcher import FieldMatcher
from service.engine.patterns import PatternSpec, check_expression, strip_boundaries, without_buffer_ends


@pytest.mark.parametrize(
    ("expression", "stripped", "removed"),
    [
        (r"\bporn\b", "porn", 2),  # both ends
        (r"a\\b", r"a\\b", 0),  # an escaped backslash followed by b is not a boundary
        (r"[\b]x", r"[\b]x", 0),  # inside a class it is not a boundary either
        (r"\bhong[\x20]?bao\b", r"hong[\x20]?bao", 2),  # variable-length pattern
    ],
)
def test_strip_boundaries(expression: str, stripped: str, removed: int) -> None:
    assert strip_boundaries(expression) == (stripped, removed)


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("idiot", [(0, 5)]),
        ("idiotic idiot", [(8, 13)]),  # the first occurrence fails the boundary, a later one passes
        ("idiotic", []),
        ("xidiot", []),
        ("机密idiot。", [(2, 7)]),  # CJK next to Latin is a boundary
        ("idiot_", []),  # underscore is a word character, as in \b
    ],
)
def test_literal_boundaries(text: str, spans: list[tuple[int, int]]) -> None:
    matcher = FieldMatcher((PatternSpec(r"\bidiot\b", 5, True),))
    assert matcher.scan(text).get(0, []) == spans


def test_variable_pattern_with_boundaries_is_located_by_re2() -> None:
    matcher = FieldMatcher((PatternSpec(r"\bhong[\x20]?bao\b", None, True),))
    assert matcher.scan("fa hong bao le") == {0: [(3, 11)]}
    assert matcher.scan("fahongbao") == {}


def test_non_ascii_offsets_and_many_occurrences() -> None:
    matcher = FieldMatcher((PatternSpec("机密", 2, False), PatternSpec("密", 1, True)))
    hits = matcher.scan("😀机密机密" + "机密" * 100)
    assert hits[0][:2] == [(1, 3), (3, 5)]
    assert len(hits[0]) == 64  # bounded per pattern
    assert hits[1] == [(2, 3)]  # single match: first occurrence only


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        (r"(a)\1", "not a linear-time (RE2) regex"),  # backreference
        (r"(?=a)b", "not a linear-time (RE2) regex"),  # lookahead
        ("a*", "can match empty text"),  # said in the author's terms, not Hyperscan's flag names
        ("(", "not a linear-time (RE2) regex"),
    ],
)
def test_unsafe_expressions_are_refused(expression: str, reason: str) -> None:
    problem = check_expression(expression)
    assert problem is not None
    assert reason in problem


def test_safe_expression_passes() -> None:
    assert check_expression(r"[0-9]{2,6}\s*元") is None


def test_hits_are_listed_in_text_order() -> None:
    """By first span, then pattern id, whatever order Hyperscan reported them in: "c" ends first,
    "abcde" starts first. A text scanned alone and inside a batch so list the same evidence."""
    matcher = FieldMatcher((PatternSpec("c", 1, True), PatternSpec("abcde", 5, True), PatternSpec("e", 1, True)))
    assert list(matcher.scan("abcde").items()) == [(1, [(0, 5)]), (0, [(2, 3)]), (2, [(4, 5)])]


@pytest.mark.parametrize(
    ("expression", "relaxed"),
    [
        ("^开头", "开头"),
        ("结尾$", "结尾"),
        (r"(^|[^a-z])x($|\b)", r"(|[^a-z])x(|\b)"),
        (r"[$^]x", None),  # inside a class: characters
        (r"[^^]x", None),
        (r"\$x\^", None),  # escaped
        (r"\Ax\z", "x"),
        (r"a\Bb", "ab"),
        ("plain", None),
    ],
)
def test_without_buffer_ends(expression: str, relaxed: str | None) -> None:
    assert without_buffer_ends(expression) == relaxed
