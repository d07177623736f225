"""Compile validated rule specs into an `Engine`: patterns into per-channel Hyperscan databases,
conditions into evaluation nodes, and a trigger index so each event evaluates only the rules a
text hit or its event type can make true.

Problems are appended to the caller's issue list (every one, with its location); the compiler
returns None when any was found, so nothing half-built is ever served.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Final

import re2

from service.engine import conditions as c
from service.engine.classifier import Channel, CompiledRule, Engine, EventKind, Exemption
from service.engine.counting import Counted, Seen
from service.engine.hashbank import HashBank
from service.engine.homophones import Homophones
from service.engine.matcher import FieldMatcher
from service.engine.normalize import SKELETON_KEPT, Normalizer
from service.engine.patterns import PatternCompileError, PatternSpec, check_expression
from service.engine.stand_ins import StandIns
from service.engine.textmodel import NgramModel
from service.errors import PackIssue
from service.events import ACTION_RANK, EVENT_TYPES, RulesetRef
from service.rules import schema as s
from service.rules.expansions import (
    MIN_HOMOPHONE_CHARS,
    Variant,
    expand,
    fold_regex,
    folder,
    homophone_twin,
    literal_separators,
)
from service.rules.model_conditions import compile_classifier
from service.rules.tables import (
    COMMON_WORD_MAX_CHARS,
    TABLE_SIZE,
    common_characters,
    common_words,
    emoji_stand_ins,
    homophone_table,
    pinyin_syllables,
    skeleton_table,
    stand_in_tables,
    translate_table,
)

Locate = Callable[[str, str], PackIssue]  # (json path, message) → located issue

_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_WINDOW_SECONDS: Final = 30 * 86400


@dataclass(frozen=True)
class Layers:
    """Normalisation layers (docs/rules.md, "Evasion layers"). width … traditional fold the text
    1:1 (one normaliser per distinct setting); leet, pinyin and emoji widen keywords into variants
    at load (service.rules.expansions), so rules that differ only in those share one normalised
    text and one database. homophones gives a channel's patterns twins that the matcher scans over
    a homophone-folded view of the same text (rules that differ in it get their own channel)."""

    width: bool = True
    case: bool = True
    invisible: bool = True
    separators: bool = True
    traditional: bool = True
    leet: bool = True
    pinyin: bool = True
    emoji: bool = True
    homophones: bool = False  # opt-in per pack or rule; the default pack turns it on (docs/quality.md)
    near_homophones: bool = False  # with homophones: fuzzy-pinyin pairs read alike too (opt-in)
    stand_ins: bool = False  # with homophones: emoji read as the characters of their name (opt-in)

    def overridden(self, spec: s.NormalizeSpec | None) -> Layers:
        if spec is None:
            return self
        changes = {
            name: value for name in _LAYER_NAMES if (value := getattr(spec, name)) is not None
        }
        return dataclasses.replace(self, **changes) if changes else self

    def text_side(self) -> Layers:
        """The switches that decide a channel: what changes the normalised text, and homophones."""
        return dataclasses.replace(self, leet=False, pinyin=False, emoji=False)


_LAYER_NAMES: Final = tuple(f.name for f in dataclasses.fields(Layers))


@functools.lru_cache(maxsize=64)
def build_normalizer(layers: Layers, keep: frozenset[str] = frozenset()) -> Normalizer:
    """The text-side normaliser; `keep` are separators that patterns contain (stand-in emoji,
    symbols of regexes), so they are never removed (发🧧给我 keeps its 🧧) and gaps around them
    close as between hanzi; the matcher's alternate view removes them (Normalizer.without_kept)."""
    table = translate_table(
        width=layers.width,
        case=layers.case,
        traditional=layers.traditional,
        invisible=layers.invisible,
    )
    skeleton = skeleton_table(invisible=layers.invisible, separators=layers.separators)
    kept = frozenset(c for c in keep if ord(c) < TABLE_SIZE) if layers.separators else frozenset()
    if kept and skeleton is not None:
        skeleton = list(skeleton)
        for char in kept:
            skeleton[ord(char)] = SKELETON_KEPT
    return Normalizer(table, skeleton, kept)


@dataclass
class RuleSource:
    """A validated rule and where it came from."""

    spec: s.RuleSpec
    path: str  # JSON path of the rule inside its file, e.g. $.rules[3]
    locate: Locate


@dataclass
class _ChannelBuilder:
    field_name: str
    layers: Layers
    keep: set[str] = field(default_factory=set)  # separators the normaliser keeps (build_normalizer)
    expressions: dict[str, int] = field(default_factory=dict)
    lengths: list[int | None] = field(default_factory=list)
    needs_all_spans: set[int] = field(default_factory=set)
    twins: dict[int, dict[str, None]] = field(default_factory=dict)  # homophone twins per pattern id
    spelled: set[int] = field(default_factory=set)  # pinyin spellings (ends checked as syllables)

    def add(
        self,
        expression: str,
        fixed_length: int | None,
        *,
        all_spans: bool,
        twins: bool = True,
        more_twins: Sequence[str] = (),
        spelled: bool = False,
    ) -> int:
        """The id of `expression`. In a channel with homophones, a pattern of hanzi (a keyword of
        at least MIN_HOMOPHONE_CHARS, or a regex) gets its homophone fold and `more_twins` as
        twins, unless `twins` is False (variants that are not hanzi words: pinyin, emoji)."""
        pattern_id = self.expressions.get(expression)
        if pattern_id is None:
            pattern_id = len(self.lengths)
            self.expressions[expression] = pattern_id
            self.lengths.append(fixed_length)
            self.keep |= literal_separators(expression, regex=fixed_length is None)
            if spelled:
                self.spelled.add(pattern_id)
        if all_spans:
            self.needs_all_spans.add(pattern_id)
        wide_enough = fixed_length is None or fixed_length >= MIN_HOMOPHONE_CHARS
        if twins and self.layers.homophones and wide_enough:
            near = self.layers.near_homophones
            found = (homophone_twin(expression, regex=fixed_length is None, near=near), *more_twins)
            self.twins.setdefault(pattern_id, {}).update(dict.fromkeys(t for t in found if t is not None))
        return pattern_id

    @property
    def normalizer(self) -> Normalizer:
        keep = frozenset(self.keep)
        if self.layers.homophones and self.layers.stand_ins:  # stand-in emoji stay for their views
            keep |= frozenset(emoji_stand_ins(self.layers.near_homophones))
        return build_normalizer(self.layers, keep)

    def patterns(self) -> tuple[PatternSpec, ...]:
        return tuple(
            PatternSpec(expression, self.lengths[i], i not in self.needs_all_spans, tuple(self.twins.get(i, ())))
            for expression, i in self.expressions.items()
        )

    def matcher(self) -> FieldMatcher:
        normalizer = self.normalizer
        homophones = None
        stand_ins = None
        if any(self.twins.values()):
            near = self.layers.near_homophones
            homophones = Homophones(homophone_table(near), common_words(), COMMON_WORD_MAX_CHARS, common_characters())
            if self.layers.stand_ins:
                stand_ins = StandIns(stand_in_tables(near), frozenset(emoji_stand_ins(near)))
        return FieldMatcher(
            self.patterns(),
            alternate=normalizer.without_kept if normalizer.kept else None,
            alternate_probe=normalizer.kept_probe,
            homophones=homophones,
            syllables=pinyin_syllables() if self.spelled else frozenset(),
            spelled=frozenset(self.spelled),
            stand_ins=stand_ins,
        )


_ASCII_WORD: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def literal_expression(term: str) -> str:
    """A literal as a pattern both Hyperscan and RE2 read the same way; Latin ends get \\b."""
    escaped = "".join(
        ch if ch.isalnum() or ord(ch) > 0x7F else f"\\x{ord(ch):02x}" for ch in term
    )
    prefix = r"\b" if term[0] in _ASCII_WORD else ""
    suffix = r"\b" if term[-1] in _ASCII_WORD else ""
    return f"{prefix}{escaped}{suffix}"


class _Compiler:
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
        self.hash_banks = hash_banks or {}
        self.models = models or {}
        self.locate_in_pack = locate_in_pack
        self.lexicons = lexicons
        self.issues = issues
        self.pack_layers = Layers().overridden(pack.normalize)
        self.channels: dict[tuple[str, Layers], _ChannelBuilder] = {}
        self.tz = _parse_offset(pack.utc_offset)

    # --- channels and patterns

    def channel(self, field_name: str, layers: Layers) -> tuple[int, _ChannelBuilder]:
        layers = layers.text_side()  # keyword-side layers share the channel (see Layers)
        key = (field_name, layers)
        builder = self.channels.get(key)
        if builder is None:
            builder = _ChannelBuilder(field_name, layers)
            self.channels[key] = builder
        return list(self.channels).index(key), builder

    def terms(self, spec: s.KeywordsSpec | list[str], path: str, locate: Locate) -> list[str]:
        if isinstance(spec, list):
            return [t for t in spec if self._term_ok(t, path, locate)]
        found = [t for t in spec.terms if self._term_ok(t, path, locate)]
        for name in spec.lexicons:
            lexicon = self.lexicons.get(name)
            if lexicon is None:
                self.issues.append(locate(path, f"unknown lexicon {name!r} (declare it in pack.yaml)"))
                continue
            found.extend(lexicon)
        if not found and not any(i for i in spec.lexicons if i not in self.lexicons):
            self.issues.append(locate(path, "keywords need at least one term or lexicon entry"))
        return found

    def _term_ok(self, term: str, path: str, locate: Locate) -> bool:
        if not term.strip():
            self.issues.append(locate(path, "empty keyword"))
            return False
        return True

    def keyword_ids(
        self, terms: Sequence[str], field_name: str, layers: Layers, path: str, locate: Locate, *, all_spans: bool
    ) -> tuple[int, tuple[int, ...]]:
        index, builder = self.channel(field_name, layers)
        # Terms fold without the kept separators (builder.keep), so the result never depends on
        # the order rules were compiled in.
        fold = folder(build_normalizer(builder.layers))
        ids: list[int] = []
        for term in terms:
            folded = fold(term.strip())
            if not folded:
                self.issues.append(locate(path, f"keyword {term!r} is empty after normalisation"))
                continue
            found = expand(
                folded, fold, leet=layers.leet, pinyin=layers.pinyin, homophones=layers.homophones, emoji=layers.emoji,
                near=layers.near_homophones,
            )
            main = found.fixed or Variant(literal_expression(folded), len(folded))
            ids.append(builder.add(main.expression, main.length, all_spans=all_spans, more_twins=found.homophones))
            for variant in found.extra:
                ids.append(
                    builder.add(variant.expression, variant.length, all_spans=all_spans, twins=False,
                                spelled=variant.spelled)
                )
            builder.keep |= found.emoji
        return index, tuple(dict.fromkeys(ids))

    # --- conditions

    def condition(self, spec: s.ConditionSpec, path: str, layers: Layers, locate: Locate) -> c.Condition | None:
        keys = [f.name for f in _CONDITION_FIELDS if getattr(spec, f.attr) is not None]
        if len(keys) != 1:
            found = ", ".join(keys) if keys else "none"
            self.issues.append(locate(path, f"a condition needs exactly one key (found: {found})"))
            return None
        key = keys[0]
        here = f"{path}.{key}"
        if spec.all is not None or spec.any is not None:
            children_specs = spec.all if spec.all is not None else spec.any
            assert children_specs is not None
            if not children_specs:
                self.issues.append(locate(here, f"`{key}` needs at least one condition"))
                return None
            children = self.children(children_specs, here, layers, locate)
            if children is None:
                return None
            return c.AllOf(children) if spec.all is not None else c.AnyOf(children)
        if spec.not_ is not None:
            child = self.condition(spec.not_, here, layers, locate)
            return None if child is None else c.Not(child)
        if spec.at_least is not None:
            of = spec.at_least.of
            if spec.at_least.n > len(of):
                self.issues.append(locate(here, f"at_least n={spec.at_least.n} exceeds its {len(of)} conditions"))
                return None
            children = self.children(of, f"{here}.of", layers, locate)
            return None if children is None else c.AtLeast(spec.at_least.n, children)
        if spec.keywords is not None:
            kw = spec.keywords
            field_name = "text" if isinstance(kw, list) else kw.field
            terms = self.terms(kw, here, locate)
            if not terms:
                return None
            channel, ids = self.keyword_ids(terms, field_name, layers, here, locate, all_spans=False)
            return c.TextHit(channel, ids) if ids else None
        if spec.regex is not None:
            rx = spec.regex if isinstance(spec.regex, s.RegexSpec) else s.RegexSpec(pattern=spec.regex)
            problem = check_expression(rx.pattern)
            if problem is not None:
                self.issues.append(locate(here, f"regex {rx.pattern!r} refused: {problem}"))
                return None
            channel, builder = self.channel(rx.field, layers)
            pattern = rx.pattern
            if layers.homophones:  # the channel's text is homophone-folded: fold the regex alike
                pattern = fold_regex(pattern, folder(build_normalizer(builder.layers)))
            return c.TextHit(channel, (builder.add(pattern, None, all_spans=False),))
        if spec.near is not None:
            near = spec.near
            a_terms = self.terms(near.a, f"{here}.a", locate)
            b_terms = self.terms(near.b, f"{here}.b", locate)
            if not a_terms or not b_terms:
                return None
            channel, a_ids = self.keyword_ids(a_terms, near.field, layers, here, locate, all_spans=True)
            _, b_ids = self.keyword_ids(b_terms, near.field, layers, here, locate, all_spans=True)
            return c.Near(channel, a_ids, b_ids, near.within)
        if spec.type is not None:
            return c.TypeIs(frozenset(spec.type))
        if spec.payment is not None:
            p = spec.payment
            if p.min is not None and p.max is not None and p.min > p.max:
                self.issues.append(locate(here, f"payment min {p.min} is above max {p.max}"))
                return None
            return c.PaymentIs(
                frozenset([p.direction]) if p.direction else None,
                p.min,
                p.max,
                frozenset(x.upper() for x in p.currency) if p.currency else None,
            )
        if spec.sender_role is not None:
            return c.SenderHasRole(frozenset(spec.sender_role))
        if spec.chat is not None:
            ch = spec.chat
            return c.ChatIs(frozenset([ch.kind]) if ch.kind else None, ch.min_members, ch.max_members)
        if spec.file_name is not None:
            return self.file_name(spec.file_name, here, locate)
        if spec.link_domain is not None:
            return c.LinkDomainIn(frozenset(d.lower().strip(".") for d in spec.link_domain))
        if spec.forward is not None:
            return c.ForwardReaches(spec.forward.shares, spec.forward.views)
        if spec.media_hash is not None:
            return self.media_hash(spec.media_hash, here, locate)
        if spec.classifier is not None:  # a pack model's score (service.rules.model_conditions)
            return compile_classifier(spec.classifier, self.models, self.pack.models, here, locate, self.issues)
        if spec.seen is not None:
            self.issues.append(locate(here, "`seen` is only allowed as a member of the rule's top-level `all` "
                                            "(not nested, negated or in `unless`)"))
            return None
        assert spec.calendar is not None
        windows = self.windows.get(spec.calendar)
        if windows is None:
            self.issues.append(locate(here, f"unknown calendar {spec.calendar!r} (declare it in pack.yaml)"))
            return None
        return c.InWindow(spec.calendar, windows)

    def media_hash(self, spec: s.MediaHashSpec | list[str], path: str, locate: Locate) -> c.Condition | None:
        names = spec if isinstance(spec, list) else spec.banks
        if not names:
            self.issues.append(locate(path, "media_hash needs at least one bank"))
            return None
        unknown = [n for n in names if n not in self.pack.hash_banks]
        for name in unknown:
            self.issues.append(locate(path, f"unknown hash bank {name!r} (declare it in pack.yaml)"))
        banks = [self.hash_banks[n] for n in dict.fromkeys(names) if n in self.hash_banks]
        # A declared bank that failed to load has already been reported where it failed.
        if unknown or len(banks) != len(set(names)):
            return None
        return c.MediaHashNear(tuple(banks))

    def children(
        self, specs: list[s.ConditionSpec], path: str, layers: Layers, locate: Locate
    ) -> tuple[c.Condition, ...] | None:
        built = [self.condition(child, f"{path}[{i}]", layers, locate) for i, child in enumerate(specs)]
        if any(node is None for node in built):
            return None
        return tuple(node for node in built if node is not None)

    def file_name(self, globs: list[str], path: str, locate: Locate) -> c.Condition | None:
        if not globs:
            self.issues.append(locate(path, "file_name needs at least one glob"))
            return None
        expression = "(?i)^(?:" + "|".join(_glob_to_regex(g) for g in globs) + ")$"
        return c.FileNameLike(re2.compile(expression))

    # --- calendars

    @functools.cached_property
    def windows(self) -> dict[str, tuple[tuple[datetime, datetime], ...]]:
        return {name: tuple(self._windows(name, spec)) for name, spec in self.pack.calendars.items()}

    def _windows(self, name: str, windows: list[s.WindowSpec]) -> list[tuple[datetime, datetime]]:
        parsed: list[tuple[datetime, datetime]] = []
        for i, window in enumerate(windows):
            where = f"$.calendars.{name}[{i}]"
            try:
                start = _parse_instant(window.start, self.tz, end=False)
                end = _parse_instant(window.end, self.tz, end=True)
            except ValueError as exc:
                self.issues.append(self.locate_in_pack(where, f"calendar {name!r}: {exc}"))
                continue
            if end <= start:
                self.issues.append(self.locate_in_pack(where, f"calendar {name!r}: window ends before it starts"))
                continue
            parsed.append((start, end))
        return parsed

    # --- counters

    def when(self, spec: s.RuleSpec, path: str, layers: Layers, locate: Locate) -> c.Condition | None:
        """The rule's condition; `seen` members of its top-level `all` make it a `Counted` node."""
        members = spec.when.all
        if members is None or not any(m.seen is not None for m in members):
            return self.condition(spec.when, f"{path}.when", layers, locate)
        here = f"{path}.when.all"
        gate_specs = [(i, m) for i, m in enumerate(members) if m.seen is None]
        seen_specs = [(i, m.seen) for i, m in enumerate(members) if m.seen is not None]
        if not gate_specs:
            self.issues.append(locate(here, "a rule with `seen` needs another condition in its `all`: "
                                            "it counts the events that condition holds for"))
            return None
        gate_nodes = [self.condition(m, f"{here}[{i}]", layers, locate) for i, m in gate_specs]
        seen_nodes = [self.seen(spec.id, position, seen, f"{here}[{i}].seen", locate)
                      for position, (i, seen) in enumerate(seen_specs)]
        if any(n is None for n in gate_nodes) or any(n is None for n in seen_nodes):
            return None
        gates = tuple(n for n in gate_nodes if n is not None)
        gate = gates[0] if len(gates) == 1 else c.AllOf(gates)
        return Counted(gate, tuple(n for n in seen_nodes if n is not None))

    def seen(self, rule_id: str, position: int, spec: s.SeenSpec, path: str, locate: Locate) -> Seen | None:
        within = int(spec.within[:-1]) * _DURATION_UNITS[spec.within[-1]]
        if within > _MAX_WINDOW_SECONDS:
            self.issues.append(locate(f"{path}.within", f"window {spec.within} exceeds the 30-day maximum"))
            return None
        # The threshold is not part of the id: raising or lowering it keeps the counted state.
        counter_id = f"{rule_id}#{position}:{spec.of}/{spec.distinct}/{spec.within}"
        fingerprint = build_normalizer(Layers(homophones=False).text_side())
        return Seen(counter_id, spec.of, spec.distinct, spec.at_least, float(within), fingerprint)

    # --- rules

    def rule(self, source: RuleSource) -> CompiledRule | None:
        spec, path, locate = source.spec, source.path, source.locate
        if spec.category not in self.pack.categories:
            self.issues.append(locate(f"{path}.category", f"unknown category {spec.category!r}"))
        layers = self.pack_layers.overridden(spec.normalize)
        condition = self.when(spec, path, layers, locate)
        exemptions: list[Exemption] = []
        for i, unless in enumerate(spec.unless):
            where = f"{path}.unless[{i}]"
            if ACTION_RANK[unless.action] >= ACTION_RANK[spec.action]:
                self.issues.append(locate(where, f"unless must lower the action below {spec.action!r}"))
            node = self.condition(unless.when, f"{where}.when", layers, locate)
            if node is not None:
                exemptions.append(Exemption(node, unless.action, unless.severity, unless.reason))
        if not spec.examples.match:
            self.issues.append(locate(f"{path}.examples.match", "every rule needs at least one matching example"))
        if not spec.examples.no_match:
            self.issues.append(
                locate(f"{path}.examples.no_match", "every rule needs at least one non-matching example")
            )
        examples = [*spec.examples.match, *spec.examples.no_match]
        if condition is not None and not isinstance(condition, Counted) and any(
            isinstance(e, s.ExampleSpec) and e.seen is not None for e in examples
        ):
            self.issues.append(
                locate(f"{path}.examples", "an example gives `seen` but the rule has no `seen` condition")
            )
        if condition is None or len(exemptions) != len(spec.unless):
            return None
        return CompiledRule(
            id=spec.id,
            category=spec.category,
            severity=spec.severity,
            action=spec.action,
            shadow=spec.shadow,
            reason=spec.reason or spec.description or spec.id,
            condition=condition,
            exemptions=tuple(exemptions),
            folded_action=spec.folded_action,
        )


@dataclass(frozen=True)
class _ConditionField:
    name: str
    attr: str


_CONDITION_FIELDS: Final = tuple(
    _ConditionField("not" if f == "not_" else f, f) for f in s.ConditionSpec.__struct_fields__
)


def compile_pack(
    pack: s.PackFile,
    rules: Sequence[RuleSource],
    lexicons: dict[str, list[str]],
    digest: str,
    issues: list[PackIssue],
    locate_in_pack: Locate,
    *,
    hash_banks: dict[str, HashBank] | None = None,
    max_patterns: int | None = None,
    models: dict[str, NgramModel] | None = None,
) -> Engine | None:
    """Build the engine, appending every problem to `issues`; None when there were any (or when
    the pack compiles to more than `max_patterns` patterns, twins included)."""
    compiler = _Compiler(pack, lexicons, issues, locate_in_pack, hash_banks, models)
    seen: dict[str, RuleSource] = {}
    compiled: list[CompiledRule] = []
    for source in rules:
        if source.spec.id in seen:
            issues.append(source.locate(f"{source.path}.id", f"duplicate rule id {source.spec.id!r}"))
            continue
        seen[source.spec.id] = source
        rule = compiler.rule(source)
        if rule is not None:
            compiled.append(rule)
    _ = compiler.windows  # calendar problems surface even when no rule uses the calendar
    if issues:
        return None
    patterns = sum(len(b.lengths) + sum(map(len, b.twins.values())) for b in compiler.channels.values())
    if max_patterns is not None and patterns > max_patterns:
        # Checked before Hyperscan compiles them: its time and memory grow with the count.
        issues.append(locate_in_pack(
            "$", f"the pack compiles to {patterns} patterns, more than {max_patterns} (REDLINE_PACK_MAX_PATTERNS)"
        ))
        return None
    channels: list[Channel] = []
    for builder in compiler.channels.values():
        try:
            matcher = builder.matcher()
        except PatternCompileError as exc:
            issues.append(locate_in_pack("$", f"pattern database for {builder.field_name} failed: {exc.reason}"))
            return None
        channels.append(Channel(builder.field_name, builder.normalizer, matcher))
    triggers, untriggered = _trigger_index(compiled)
    return Engine(
        ruleset=RulesetRef(pack.name, pack.version, digest),
        categories={name: cat.description for name, cat in pack.categories.items()},
        channels=tuple(channels),
        rules=tuple(compiled),
        triggers=triggers,
        untriggered=untriggered,
    )


def _trigger_index(
    rules: Sequence[CompiledRule],
) -> tuple[dict[tuple[int, int], tuple[int, ...]], dict[EventKind, tuple[int, ...]]]:
    triggers: dict[tuple[int, int], list[int]] = {}
    untriggered: dict[EventKind, list[int]] = {kind: [] for kind in ALL_KINDS}
    for index, rule in enumerate(rules):
        trigger = _trigger(rule.condition)
        for key in trigger.hits:
            triggers.setdefault(key, []).append(index)
        for kind in sorted(trigger.kinds):
            untriggered[kind].append(index)
    return (
        {key: tuple(v) for key, v in triggers.items()},
        {key: tuple(v) for key, v in untriggered.items() if v},
    )


ALL_KINDS: Final[frozenset[EventKind]] = frozenset((t, linked) for t in EVENT_TYPES for linked in (False, True))


@dataclass(frozen=True)
class _Trigger:
    """A necessary condition for a node to hold: one of `hits` was scanned, or the event is of one of `kinds`.

    The classifier evaluates a rule only when its trigger fires, so a text event without a link
    never pays for a rule that only a payment, a media hash or a link's host can make true.
    """

    hits: frozenset[tuple[int, int]]
    kinds: frozenset[EventKind]

    @property
    def cost(self) -> tuple[int, int]:
        # Kinds fire on every event of the kind; hits only on a scan hit: fewer kinds first.
        return (len(self.kinds), len(self.hits))


_ANYTHING: Final = _Trigger(frozenset(), ALL_KINDS)


def _kinds(predicate: Callable[[EventKind], bool]) -> _Trigger:
    return _Trigger(frozenset(), frozenset(kind for kind in ALL_KINDS if predicate(kind)))


def _trigger(node: c.Condition) -> _Trigger:
    if isinstance(node, Counted):
        return _trigger(node.gate)
    if isinstance(node, c.TextHit):
        return _Trigger(frozenset((node.channel, i) for i in node.pattern_ids), frozenset())
    if isinstance(node, c.Near):
        return _Trigger(frozenset((node.channel, i) for i in node.a_ids), frozenset())
    if isinstance(node, c.TypeIs):
        return _kinds(lambda kind: kind[0] in node.types)
    if isinstance(node, c.MediaHashNear):
        return _kinds(lambda kind: kind[0] in c.MEDIA_TYPES)
    if isinstance(node, c.LinkDomainIn):
        return _kinds(lambda kind: kind[1])
    if isinstance(node, c.AllOf):
        # Every child is necessary: the cheapest one will do, or all kind-only children together.
        children = [_trigger(child) for child in node.children]
        options = [t for t in children if t.hits]
        kind_only = [t.kinds for t in children if not t.hits]
        if kind_only:
            options.append(_Trigger(frozenset(), frozenset.intersection(*kind_only)))
        return min(options, key=lambda t: t.cost, default=_ANYTHING)
    if isinstance(node, c.AnyOf | c.AtLeast):
        # Some child holds: a hit of any child, or a kind on which enough children can hold
        # without a hit.
        children = [_trigger(child) for child in node.children]
        needed = node.count if isinstance(node, c.AtLeast) else 1
        kinds = frozenset(k for k in ALL_KINDS if sum(1 for t in children if k in t.kinds) >= needed)
        return _Trigger(frozenset().union(*(t.hits for t in children)), kinds)
    return _ANYTHING


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


def _parse_offset(offset: str) -> timezone:
    sign = -1 if offset.startswith("-") else 1
    hours, minutes = offset[1:].split(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))


def _parse_instant(value: str, tz: timezone, *, end: bool) -> datetime:
    """A date is a whole day in the pack's offset (an end date includes its day).

    Returned in UTC: the classifier compares event times in UTC, and comparing two aware datetimes
    with the same tzinfo object skips the offset arithmetic (~0.05 vs ~1.2 µs per comparison)."""
    if len(value) == 10:
        day = date.fromisoformat(value)
        instant = datetime(day.year, day.month, day.day, tzinfo=tz)
        return (instant + timedelta(days=1) if end else instant).astimezone(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} needs a UTC offset")
    return parsed.astimezone(UTC)
