"""The homophone view: a 1:1 fold of hanzi to one representative per reading, the patterns
rewritten to run over it, and the common words a homophone hit must not be part of.

The matcher scans the folded text once for all of a field's patterns (service.engine.matcher).
A pattern that mentions a character with homophones (a *variable* character) is rewritten by
`Homophones.view` so that it matches the folded text wherever it matches the text itself, and
possibly elsewhere: its hits there are candidates, checked on the text. A pattern that mentions
none matches the folded text exactly where it matches the text (folding changes only variable
characters, every one a hanzi of category Lo, so `.`, `\\W`, `\\p{Han}` or a class without them
read both alike), and its hits need no check.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Final

from service.engine.normalize import TranslateTable

# A class that accepts any character: what a negated class becomes when folding makes it unsafe.
_ANY: Final = "[\\s\\S]"
# Characters escaped when a class is written back (members move: a leading ] or a trailing - would
# change meaning).
_CLASS_SPECIALS: Final = "]-^["


@dataclass(frozen=True, slots=True)
class Homophones:
    """The homophone view: a 1:1 fold, and the common words a homophone hit must not be part of."""

    fold: TranslateTable
    words: frozenset[str]  # common words of 2 to `longest` characters
    longest: int
    characters: frozenset[str]  # the most frequent characters
    # Code points whose fold is shared with another code point, sorted.
    _variable: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _variable_set: frozenset[int] = field(init=False, repr=False, compare=False)
    _variable_chars: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        members: dict[int, int] = {}
        for target in self.fold:
            if target is not None:
                members[target] = members.get(target, 0) + 1
        variable = tuple(
            code_point
            for code_point, target in enumerate(self.fold)
            if target is not None and members[target] > 1
        )
        object.__setattr__(self, "_variable", variable)
        object.__setattr__(self, "_variable_set", frozenset(variable))
        object.__setattr__(self, "_variable_chars", frozenset(map(chr, variable)))

    def ordinary(self, text: str, start: int, end: int) -> bool:
        """Whether text[start:end] is ordinary text: it reads entirely as common words and the most
        frequent characters (全是 is no 拳师, 女权是 no 女拳师), or a common word crosses one of
        its ends (大厦比较 holds 厦比 only across 大厦 and 比较)."""
        if self._reads_as_words(text[start:end]):
            return True
        words = self.words
        longest = self.longest
        for first in range(max(0, start - longest + 1), end):
            for stop in range(max(first + 2, start + 1), min(len(text), first + longest) + 1):
                if first >= start and stop <= end:
                    continue  # inside the span: read above (田园女圈 keeps its 田园)
                if text[first:stop] in words:
                    return True
        return False

    def _reads_as_words(self, piece: str) -> bool:
        # reachable[i]: piece[:i] splits into common words and frequent characters.
        reachable = [True] + [False] * len(piece)
        for stop in range(1, len(piece) + 1):
            if reachable[stop - 1] and piece[stop - 1] in self.characters:
                reachable[stop] = True
                continue
            for size in range(2, min(self.longest, stop) + 1):
                if reachable[stop - size] and piece[stop - size : stop] in self.words:
                    reachable[stop] = True
                    break
        return reachable[-1]

    def view(self, expression: str) -> str | None:
        """`expression` rewritten to match the folded text wherever it matches the text (a hanzi
        becomes its fold, a class gains its members' folds, a negated class loses what a folded
        outsider could become); None when it mentions no variable character."""
        if "\\" not in expression and "[" not in expression:  # hanzi only as literals: fold them
            return None if self._variable_chars.isdisjoint(expression) else expression.translate(self.fold)
        out: list[str] = []
        mentioned = False
        i = 0
        while i < len(expression):
            char = expression[i]
            if char == "\\":
                stop = _escape_end(expression, i)
                token = expression[i:stop]
                if token.startswith("\\Q"):  # quoted text: its characters are literals
                    mentioned |= any(ord(c) in self._variable_set for c in token[2:])
                    out.append("\\Q" + "".join(map(self._folded_char, token[2:])))
                else:
                    code_point = _escaped_code_point(token)
                    if code_point is not None and code_point in self._variable_set:
                        out.append(self._folded_char(chr(code_point)))
                        mentioned = True
                    else:
                        out.append(token)
                i = stop
            elif char == "[":
                stop = _class_end(expression, i)
                rewritten = self._view_class(expression[i:stop])
                if rewritten is not None:
                    out.append(rewritten)
                    mentioned = True
                else:
                    out.append(expression[i:stop])
                i = stop
            else:
                if ord(char) in self._variable_set:
                    mentioned = True
                    char = self._folded_char(char)
                out.append(char)
                i += 1
        return "".join(out) if mentioned else None

    def _folded_char(self, char: str) -> str:
        code_point = ord(char)
        if code_point in self._variable_set:
            target = self.fold[code_point]
            assert target is not None
            return chr(target)
        return char

    def _view_class(self, text: str) -> str | None:
        """A class `[...]` over the folded text; None when it mentions no variable character."""
        negated = text.startswith("[^")
        members = _class_members(text[2 if negated else 1 : -1])
        ranges = [(m.low, m.high) for m in members if m.low >= 0]
        inside = self._variable_in(ranges)
        if not inside:
            return None

        def member(code_point: int) -> bool:
            return any(low <= code_point <= high for low, high in ranges)

        if all(member(v) == member(t) for v in self._variable if (t := self.fold[v]) is not None):
            return None  # a character and its fold are both members or both not ([一-龥], [^一-龥])

        if not negated:
            # A member's homophone reads as its fold in the view: the class takes the folds too.
            targets = {target for v in inside if (target := self.fold[v]) is not None and not member(target)}
            return "[" + "".join(m.text for m in members) + "".join(map(chr, sorted(targets))) + "]"
        # An outsider folds to a character of the class: the view must let that character through.
        clashes = {
            target
            for code_point in self._variable
            if (target := self.fold[code_point]) is not None and not member(code_point) and member(target)
        }
        if any(m.low < m.high and any(m.low <= t <= m.high for t in clashes) for m in members):
            return _ANY
        kept = [m for m in members if not (m.low >= 0 and m.low in clashes)]
        if not kept:
            return _ANY
        return "[^" + "".join(m.text for m in kept) + "]"

    def _variable_in(self, ranges: list[tuple[int, int]]) -> list[int]:
        variable = self._variable
        found: list[int] = []
        for low, high in ranges:
            found.extend(variable[bisect_left(variable, low) : bisect_left(variable, high + 1)])
        return found


@dataclass(frozen=True, slots=True)
class _Member:
    """A class member: a character (low == high), a range, or anything else (low == -1: \\d,
    \\p{Han}, [:alpha:]), with its text to write back."""

    low: int
    high: int
    text: str


def _escape_end(expression: str, i: int) -> int:
    """The end of the escape starting at expression[i] (a backslash)."""
    kind = expression[i + 1 : i + 2]
    if kind in ("x", "p", "P") and expression[i + 2 : i + 3] == "{":
        return expression.find("}", i) + 1 or len(expression)
    if kind == "x":
        stop = i + 2
        while stop < min(i + 4, len(expression)) and expression[stop] in "0123456789abcdefABCDEF":
            stop += 1
        return stop
    if kind in ("p", "P"):
        return min(i + 3, len(expression))
    if kind == "Q":
        stop = expression.find("\\E", i + 2)
        return len(expression) if stop < 0 else stop
    return min(i + 2, len(expression))


def _escaped_code_point(token: str) -> int | None:
    """The character an escape stands for, when it stands for one character."""
    if token.startswith("\\x{") and token.endswith("}"):
        try:
            return int(token[3:-1], 16)
        except ValueError:
            return None
    if token.startswith("\\x") and len(token) > 2:
        return int(token[2:], 16)
    if len(token) == 2 and not token[1].isascii():
        return ord(token[1])
    return None


def _class_end(expression: str, i: int) -> int:
    """The end of the class starting at expression[i] (`[`), past its `]`."""
    j = i + 1
    if expression[j : j + 1] == "^":
        j += 1
    if expression[j : j + 1] == "]":  # a leading ] is a member
        j += 1
    while j < len(expression):
        char = expression[j]
        if char == "\\":
            j = _escape_end(expression, j)
            continue
        if char == "[" and expression[j + 1 : j + 2] == ":":
            close = expression.find(":]", j + 2)
            j = close + 2 if close >= 0 else j + 1
            continue
        if char == "]":
            return j + 1
        j += 1
    return len(expression)


def _class_members(body: str) -> list[_Member]:
    # (code point or -1, text as written, text to write back alone: specials escaped, as the
    # members are written back in another order)
    single: list[tuple[int, str, str]] = []
    j = 0
    while j < len(body):
        char = body[j]
        if char == "\\":
            stop = _escape_end(body, j)
            token = body[j:stop]
            code_point = _escaped_code_point(token)
            if code_point is None and len(token) == 2 and not token[1].isalnum():
                code_point = ord(token[1])  # \] \- \\ …
            single.append((-1 if code_point is None else code_point, token, token))
            j = stop
        elif char == "[" and body[j + 1 : j + 2] == ":":
            close = body.find(":]", j + 2)
            stop = close + 2 if close >= 0 else j + 1
            single.append((-1, body[j:stop], body[j:stop]))
            j = stop
        else:
            single.append((ord(char), char, "\\" + char if char in _CLASS_SPECIALS else char))
            j += 1
    members: list[_Member] = []
    k = 0
    while k < len(single):
        code_point, _, alone = single[k]
        if k + 2 < len(single) and single[k + 1][1] == "-" and code_point >= 0 and single[k + 2][0] >= 0:
            members.append(_Member(code_point, single[k + 2][0], f"{alone}-{single[k + 2][2]}"))
            k += 3
        else:
            members.append(_Member(code_point, code_point, alone))
            k += 1
    return members
