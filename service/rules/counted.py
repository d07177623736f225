"""A rule's `when`: `seen` members of its top-level `all` make it a `Counted` node (a gate
condition and the counters that must reach their thresholds; service.engine.counting)."""

from __future__ import annotations

from typing import Final

from service.engine import conditions as c
from service.engine.counting import Counted, Seen
from service.rules import schema as s
from service.rules.conditions import PackContext, Place, compile_condition
from service.rules.normalizers import Layers, build_normalizer

_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_WINDOW_SECONDS: Final = 30 * 86400


def compile_when(ctx: PackContext, spec: s.RuleSpec, place: Place) -> c.Condition | None:
    """The rule's condition (`place` is the rule's); a `Counted` node when it has `seen` members."""
    members = spec.when.all
    if members is None or not any(m.seen is not None for m in members):
        return compile_condition(ctx, spec.when, place.at(f"{place.path}.when"))
    here = place.at(f"{place.path}.when.all")
    gate_specs = [(i, m) for i, m in enumerate(members) if m.seen is None]
    seen_specs = [(i, m.seen) for i, m in enumerate(members) if m.seen is not None]
    if not gate_specs:
        ctx.report(here, "a rule with `seen` needs another condition in its `all`: "
                         "it counts the events that condition holds for")
        return None
    gate_nodes = [compile_condition(ctx, m, here.at(f"{here.path}[{i}]")) for i, m in gate_specs]
    seen_nodes = [_seen(ctx, spec.id, position, seen, here.at(f"{here.path}[{i}].seen"))
                  for position, (i, seen) in enumerate(seen_specs)]
    if any(n is None for n in gate_nodes) or any(n is None for n in seen_nodes):
        return None
    gates = tuple(n for n in gate_nodes if n is not None)
    gate = gates[0] if len(gates) == 1 else c.AllOf(gates)
    return Counted(gate, tuple(n for n in seen_nodes if n is not None))


def _seen(ctx: PackContext, rule_id: str, position: int, spec: s.SeenSpec, place: Place) -> Seen | None:
    within = int(spec.within[:-1]) * _DURATION_UNITS[spec.within[-1]]
    if within > _MAX_WINDOW_SECONDS:
        ctx.report(place.at(f"{place.path}.within"), f"window {spec.within} exceeds the 30-day maximum")
        return None
    # The threshold is not part of the id: raising or lowering it keeps the counted state.
    counter_id = f"{rule_id}#{position}:{spec.of}/{spec.distinct}/{spec.within}"
    fingerprint = build_normalizer(Layers(homophones=False).text_side())
    return Seen(counter_id, spec.of, spec.distinct, spec.at_least, float(within), fingerprint)
