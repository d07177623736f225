"""Compile validated rule specs into an `Engine`: conditions into evaluation nodes
(service.rules.conditions, service.rules.counted), their patterns into per-channel Hyperscan
databases (service.rules.channels), and a trigger index so each event evaluates only the rules a
text hit or its event type can make true (service.rules.triggers).

Problems are appended to the caller's issue list (every one, with its location); the compiler
returns None when any was found, so nothing half-built is ever served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.engine.classifier import Channel, CompiledRule, Engine, Exemption
from service.engine.counting import Counted
from service.engine.hashbank import HashBank
from service.engine.patterns import PatternCompileError
from service.engine.textmodel import NgramModel
from service.errors import PackIssue
from service.events import ACTION_RANK, RulesetRef
from service.rules import schema as s
from service.rules.conditions import Locate, PackContext, Place, compile_condition
from service.rules.counted import compile_when
from service.rules.normalizers import Layers
from service.rules.triggers import trigger_index


@dataclass
class RuleSource:
    """A validated rule and where it came from."""

    spec: s.RuleSpec
    path: str  # JSON path of the rule inside its file, e.g. $.rules[3]
    locate: Locate


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
    ctx = PackContext(pack, lexicons, issues, locate_in_pack, hash_banks, models)
    pack_layers = Layers().overridden(pack.normalize)
    seen: dict[str, RuleSource] = {}
    compiled: list[CompiledRule] = []
    for source in rules:
        if source.spec.id in seen:
            issues.append(source.locate(f"{source.path}.id", f"duplicate rule id {source.spec.id!r}"))
            continue
        seen[source.spec.id] = source
        rule = _compile_rule(ctx, source, pack_layers)
        if rule is not None:
            compiled.append(rule)
    _ = ctx.calendars  # calendar problems surface even when no rule uses the calendar
    if issues:
        return None
    patterns = sum(len(b.lengths) + sum(map(len, b.twins.values())) for b in ctx.channels.builders())
    if max_patterns is not None and patterns > max_patterns:
        # Checked before Hyperscan compiles them: its time and memory grow with the count.
        issues.append(locate_in_pack(
            "$", f"the pack compiles to {patterns} patterns, more than {max_patterns} (REDLINE_PACK_MAX_PATTERNS)"
        ))
        return None
    channels: list[Channel] = []
    for builder in ctx.channels.builders():
        try:
            channels.append(builder.channel())
        except PatternCompileError as exc:
            issues.append(locate_in_pack("$", f"pattern database for {builder.field_name} failed: {exc.reason}"))
            return None
    index = trigger_index(compiled)
    return Engine(
        ruleset=RulesetRef(pack.name, pack.version, digest),
        categories={name: cat.description for name, cat in pack.categories.items()},
        channels=tuple(channels),
        rules=tuple(compiled),
        triggers=index.triggers,
        untriggered=index.untriggered,
        scored=index.scored,
    )


def _compile_rule(ctx: PackContext, source: RuleSource, pack_layers: Layers) -> CompiledRule | None:
    spec, path, locate = source.spec, source.path, source.locate
    if spec.category not in ctx.pack.categories:
        ctx.issues.append(locate(f"{path}.category", f"unknown category {spec.category!r}"))
    place = Place(path, pack_layers.overridden(spec.normalize), locate)
    condition = compile_when(ctx, spec, place)
    exemptions: list[Exemption] = []
    for i, unless in enumerate(spec.unless):
        where = f"{path}.unless[{i}]"
        if ACTION_RANK[unless.action] >= ACTION_RANK[spec.action]:
            ctx.issues.append(locate(where, f"unless must lower the action below {spec.action!r}"))
        node = compile_condition(ctx, unless.when, place.at(f"{where}.when"))
        if node is not None:
            exemptions.append(Exemption(node, unless.action, unless.severity, unless.reason))
    if not spec.examples.match:
        ctx.issues.append(locate(f"{path}.examples.match", "every rule needs at least one matching example"))
    if not spec.examples.no_match:
        ctx.issues.append(locate(f"{path}.examples.no_match", "every rule needs at least one non-matching example"))
    examples = [*spec.examples.match, *spec.examples.no_match]
    if condition is not None and not isinstance(condition, Counted) and any(
        isinstance(e, s.ExampleSpec) and e.seen is not None for e in examples
    ):
        ctx.issues.append(locate(f"{path}.examples", "an example gives `seen` but the rule has no `seen` condition"))
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
