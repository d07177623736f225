"""Condition specs → engine condition nodes, one compile function per condition key.

`CONDITION_COMPILERS` maps every key of `ConditionSpec` to the function that compiles its value;
a new condition kind is a schema field, an engine node and one entry here (a test checks that
every key has one). Problems are appended to the context's issue list with their location; a
function returns None when its condition cannot be built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import re2

from service.engine import conditions as c
from service.engine.hashbank import HashBank
from service.engine.patterns import check_expression
from service.engine.textmodel import NgramModel
from service.errors import PackIssue
from service.rules import schema as s
from service.rules.calendars import Windows, parse_calendars
from service.rules.channels import Channels, literal_expression
from service.rules.expansions import Variant, expand, fold_regex, folder
from service.rules.model_conditions import compile_classifier
from service.rules.normalizers import Layers, build_normalizer

Locate = Callable[[str, str], PackIssue]  # (json path, message) → located issue


@dataclass(frozen=True)
class Place:
    """Where a condition sits: its JSON path, the layers its rule normalises with, and the file
    that locates an issue at a path."""

    path: str
    layers: Layers
    locate: Locate

    def at(self, path: str) -> Place:
        return Place(path, self.layers, self.locate)

    def issue(self, message: str) -> PackIssue:
        return self.locate(self.path, message)


class PackContext:
    """What compiling one pack's conditions shares: the pack, its lexicons and hash banks, the
    channels patterns go into, and the list every problem is appended to."""

    def __init__(
        self,
        pack: s.PackFile,
        lexicons: dict[str, list[str]],
        issues: list[PackIssue],
        locate_in_pack: Locate,
        hash_banks: dict[str, HashBank] | None = None,
        models: dict[str, NgramModel] | None = None,
    ) -> None:
        self.pack = pack
        self.lexicons = lexicons
        self.issues = issues
        self.locate_in_pack = locate_in_pack
        self.hash_banks = hash_banks or {}
        self.models = models or {}  # the pack's loaded text models (service.rules.models)
        self.channels = Channels()

    @functools.cached_property
    def calendars(self) -> dict[str, Windows]:
        # Parsed on first use (or at the end of the pack), so its problems are listed in that order.
        return parse_calendars(self.pack, self.locate_in_pack, self.issues)

    def report(self, place: Place, message: str) -> None:
        self.issues.append(place.issue(message))


# The value's type is the type of the `ConditionSpec` field the key names.
ConditionCompiler = Callable[[PackContext, Any, Place], c.Condition | None]


@dataclass(frozen=True)
class _ConditionField:
    name: str  # as written in the pack
    attr: str  # on ConditionSpec


_CONDITION_FIELDS: Final = tuple(
    _ConditionField("not" if f == "not_" else f, f) for f in s.ConditionSpec.__struct_fields__
)


def compile_condition(ctx: PackContext, spec: s.ConditionSpec, place: Place) -> c.Condition | None:
    keys = [f for f in _CONDITION_FIELDS if getattr(spec, f.attr) is not None]
    if len(keys) != 1:
        found = ", ".join(f.name for f in keys) if keys else "none"
        ctx.report(place, f"a condition needs exactly one key (found: {found})")
        return None
    key = keys[0]
    return CONDITION_COMPILERS[key.name](ctx, getattr(spec, key.attr), place.at(f"{place.path}.{key.name}"))


def compile_children(
    ctx: PackContext, specs: Sequence[s.ConditionSpec], place: Place
) -> tuple[c.Condition, ...] | None:
    built = [compile_condition(ctx, child, place.at(f"{place.path}[{i}]")) for i, child in enumerate(specs)]
    if any(node is None for node in built):
        return None
    return tuple(node for node in built if node is not None)


# --- composition


def _group(name: str, node: Callable[[tuple[c.Condition, ...]], c.Condition]) -> ConditionCompiler:
    def compile_group(ctx: PackContext, specs: list[s.ConditionSpec], place: Place) -> c.Condition | None:
        if not specs:
            ctx.report(place, f"`{name}` needs at least one condition")
            return None
        children = compile_children(ctx, specs, place)
        return None if children is None else node(children)

    return compile_group


def _not(ctx: PackContext, spec: s.ConditionSpec, place: Place) -> c.Condition | None:
    child = compile_condition(ctx, spec, place)
    return None if child is None else c.Not(child)


def _at_least(ctx: PackContext, spec: s.AtLeastSpec, place: Place) -> c.Condition | None:
    if spec.n > len(spec.of):
        ctx.report(place, f"at_least n={spec.n} exceeds its {len(spec.of)} conditions")
        return None
    children = compile_children(ctx, spec.of, place.at(f"{place.path}.of"))
    return None if children is None else c.AtLeast(spec.n, children)


# --- text


def _keywords(ctx: PackContext, spec: s.KeywordsSpec | list[str], place: Place) -> c.Condition | None:
    field_name = "text" if isinstance(spec, list) else spec.field
    terms = _terms(ctx, spec, place)
    if not terms:
        return None
    channel, ids = _keyword_ids(ctx, terms, field_name, place, all_spans=False)
    return c.TextHit(channel, ids) if ids else None


def _regex(ctx: PackContext, spec: s.RegexSpec | str, place: Place) -> c.Condition | None:
    rx = spec if isinstance(spec, s.RegexSpec) else s.RegexSpec(pattern=spec)
    problem = check_expression(rx.pattern)
    if problem is not None:
        ctx.report(place, f"regex {rx.pattern!r} refused: {problem}")
        return None
    channel, builder = ctx.channels.get(rx.field, place.layers)
    pattern = rx.pattern
    if place.layers.homophones:  # the channel's text is homophone-folded: fold the regex alike
        pattern = fold_regex(pattern, folder(build_normalizer(builder.layers)))
    return c.TextHit(channel, (builder.add(pattern, None, all_spans=False, near=place.layers.near_homophones),))


def _near(ctx: PackContext, spec: s.NearSpec, place: Place) -> c.Condition | None:
    a_terms = _terms(ctx, spec.a, place.at(f"{place.path}.a"))
    b_terms = _terms(ctx, spec.b, place.at(f"{place.path}.b"))
    if not a_terms or not b_terms:
        return None
    channel, a_ids = _keyword_ids(ctx, a_terms, spec.field, place, all_spans=True)
    _, b_ids = _keyword_ids(ctx, b_terms, spec.field, place, all_spans=True)
    return c.Near(channel, a_ids, b_ids, spec.within)


def _terms(ctx: PackContext, spec: s.KeywordsSpec | list[str], place: Place) -> list[str]:
    if isinstance(spec, list):
        return [t for t in spec if _term_ok(ctx, t, place)]
    found = [t for t in spec.terms if _term_ok(ctx, t, place)]
    for name in spec.lexicons:
        lexicon = ctx.lexicons.get(name)
        if lexicon is None:
            ctx.report(place, f"unknown lexicon {name!r} (declare it in pack.yaml)")
            continue
        found.extend(lexicon)
    if not found and not any(i for i in spec.lexicons if i not in ctx.lexicons):
        ctx.report(place, "keywords need at least one term or lexicon entry")
    return found


def _term_ok(ctx: PackContext, term: str, place: Place) -> bool:
    if not term.strip():
        ctx.report(place, "empty keyword")
        return False
    return True


def _keyword_ids(
    ctx: PackContext, terms: Sequence[str], field_name: str, place: Place, *, all_spans: bool
) -> tuple[int, tuple[int, ...]]:
    layers = place.layers
    index, builder = ctx.channels.get(field_name, layers)
    # Terms fold without the kept separators (builder.keep), so the result never depends on
    # the order rules were compiled in.
    fold = folder(build_normalizer(builder.layers))
    ids: list[int] = []
    for term in terms:
        folded = fold(term.strip())
        if not folded:
            ctx.report(place, f"keyword {term!r} is empty after normalisation")
            continue
        found = expand(
            folded, fold, leet=layers.leet, pinyin=layers.pinyin, homophones=layers.homophones, emoji=layers.emoji,
            near=layers.near_homophones, initials=layers.initials, split_characters=layers.split_characters,
        )
        main = found.fixed or Variant(literal_expression(folded), len(folded))
        ids.append(builder.add(main.expression, main.length, all_spans=all_spans, more_twins=found.homophones,
                               near=layers.near_homophones))
        for variant in found.extra:
            ids.append(
                builder.add(variant.expression, variant.length, all_spans=all_spans, twins=False,
                            spelled=variant.spelled, folded=variant.folded)
            )
        builder.keep |= found.emoji
    return index, tuple(dict.fromkeys(ids))


# --- event fields


def _type(ctx: PackContext, types: list[str], place: Place) -> c.Condition:
    return c.TypeIs(frozenset(types))


def _payment(ctx: PackContext, spec: s.PaymentSpec, place: Place) -> c.Condition | None:
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        ctx.report(place, f"payment min {spec.min} is above max {spec.max}")
        return None
    return c.PaymentIs(
        frozenset([spec.direction]) if spec.direction else None,
        spec.min,
        spec.max,
        frozenset(x.upper() for x in spec.currency) if spec.currency else None,
    )


def _sender_role(ctx: PackContext, roles: list[str], place: Place) -> c.Condition:
    return c.SenderHasRole(frozenset(roles))


def _chat(ctx: PackContext, spec: s.ChatSpec, place: Place) -> c.Condition:
    return c.ChatIs(frozenset([spec.kind]) if spec.kind else None, spec.min_members, spec.max_members)


def _file_name(ctx: PackContext, globs: list[str], place: Place) -> c.Condition | None:
    if not globs:
        ctx.report(place, "file_name needs at least one glob")
        return None
    expression = "(?i)^(?:" + "|".join(_glob_to_regex(g) for g in globs) + ")$"
    return c.FileNameLike(re2.compile(expression))


def _glob_to_regex(glob: str) -> str:
    out = []
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch.isalnum() or ord(ch) > 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}")
    return "".join(out)


def _link_domain(ctx: PackContext, domains: list[str], place: Place) -> c.Condition:
    return c.LinkDomainIn(frozenset(d.lower().strip(".") for d in domains))


def _forward(ctx: PackContext, spec: s.ForwardSpec, place: Place) -> c.Condition:
    return c.ForwardReaches(spec.shares, spec.views)


def _media_hash(ctx: PackContext, spec: s.MediaHashSpec | list[str], place: Place) -> c.Condition | None:
    names = spec if isinstance(spec, list) else spec.banks
    if not names:
        ctx.report(place, "media_hash needs at least one bank")
        return None
    unknown = [n for n in names if n not in ctx.pack.hash_banks]
    for name in unknown:
        ctx.report(place, f"unknown hash bank {name!r} (declare it in pack.yaml)")
    banks = [ctx.hash_banks[n] for n in dict.fromkeys(names) if n in ctx.hash_banks]
    # A declared bank that failed to load has already been reported where it failed.
    if unknown or len(banks) != len(set(names)):
        return None
    return c.MediaHashNear(tuple(banks))


def _calendar(ctx: PackContext, name: str, place: Place) -> c.Condition | None:
    windows = ctx.calendars.get(name)
    if windows is None:
        ctx.report(place, f"unknown calendar {name!r} (declare it in pack.yaml)")
        return None
    return c.InWindow(name, windows)


def _seen(ctx: PackContext, spec: s.SeenSpec, place: Place) -> None:
    # Counted rules take their `seen` members out of the top-level `all` (service.rules.counted).
    ctx.report(place, "`seen` is only allowed as a member of the rule's top-level `all` "
                      "(not nested, negated or in `unless`)")


def _classifier(ctx: PackContext, spec: s.ClassifierSpec, place: Place) -> c.Condition | None:
    """A pack model's score (service.rules.model_conditions)."""
    return compile_classifier(spec, ctx.models, ctx.pack.models, place.path, place.locate, ctx.issues)


CONDITION_COMPILERS: Final[Mapping[str, ConditionCompiler]] = {
    "all": _group("all", c.AllOf),
    "any": _group("any", c.AnyOf),
    "not": _not,
    "at_least": _at_least,
    "keywords": _keywords,
    "regex": _regex,
    "near": _near,
    "type": _type,
    "payment": _payment,
    "sender_role": _sender_role,
    "chat": _chat,
    "file_name": _file_name,
    "link_domain": _link_domain,
    "forward": _forward,
    "media_hash": _media_hash,
    "classifier": _classifier,
    "calendar": _calendar,
    "seen": _seen,
}
