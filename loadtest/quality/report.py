"""Markdown rendering of the harness's figures."""

from __future__ import annotations

from collections.abc import Sequence

from loadtest.quality.evasion import KindResult
from loadtest.quality.scoring import DatasetScore, categories_seen
from loadtest.quality.traps import Trap
from service.events import Verdict


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def dataset_table(scores: Sequence[DatasetScore]) -> str:
    lines = [
        "| dataset | category | flagged positive | flagged negative | precision | recall (all positive rows) "
        "| shadow on positive | shadow on negative |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        for category in [*categories_seen([s]), "*"]:
            name = "any category" if category == "*" else category
            lines.append(
                f"| {s.name} | {name} | {s.flagged_positive[category]} | {s.flagged_negative[category]} "
                f"| {pct(s.precision(category))} | {pct(s.recall(category))} "
                f"| {s.shadow_positive[category]} | {s.shadow_negative[category]} |"
            )
    return "\n".join(lines)


def group_table(score: DatasetScore, categories: Sequence[str]) -> str:
    head = " | ".join("any category" if c == "*" else c for c in categories)
    lines = [f"| {score.name} group | rows | {head} |", "|---|---:|" + "---:|" * len(categories)]
    for group in sorted(score.group_sizes):
        cells = " | ".join(
            f"{score.flagged_by_group[(group, c)]} ({pct(score.group_rate(group, c))})" for c in categories
        )
        lines.append(f"| {group} | {score.group_sizes[group]} | {cells} |")
    return "\n".join(lines)


def false_positive_listing(score: DatasetScore, limit: int) -> str:
    lines = [f"{score.name}: {len(score.false_positives)} negative rows flagged; by rule: "
             + ", ".join(f"{rule} {n}" for rule, n in score.rule_false_positives.most_common())]
    for fp in score.false_positives[:limit]:
        rules = "; ".join(f"{rule} ({action}) {evidence}" for rule, action, evidence in fp.rules)
        lines.append(f"- {fp.row_id} [{fp.group}] {rules} :: {fp.text[:80]!r}")
    return "\n".join(lines)


def evasion_table(results: dict[str, dict[str, KindResult]]) -> str:
    sources = list(results)
    lines = [
        "| kind | " + " | ".join(f"{s} kept / applicable" for s in sources) + " | all |",
        "|---|" + "---:|" * (len(sources) + 1),
    ]
    kinds = list(next(iter(results.values())))
    for kind in kinds:
        cells = []
        kept = applicable = 0
        for source in sources:
            r = results[source][kind]
            kept += r.kept
            applicable += r.applicable
            cells.append(f"{r.kept}/{r.applicable} ({pct(r.rate)})")
        total = kept / applicable if applicable else None
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {pct(total)} |")
    return "\n".join(lines)


def evasion_misses(results: dict[str, dict[str, KindResult]], limit: int, kinds: Sequence[str] = ()) -> str:
    """Up to `limit` misses per source and kind: the rewritten evidence, then the message."""
    lines = []
    for source, by_kind in results.items():
        for kind, r in by_kind.items():
            if kinds and kind not in kinds:
                continue
            for miss in r.misses[:limit]:
                rewrites = "; ".join(f"{before!r} → {after!r}" for before, after in miss.pieces)
                lines.append(f"- {source}/{kind} [{miss.category}] {rewrites} in {miss.original[:60]!r}")
    return "\n".join(lines)


def trap_table(results: Sequence[tuple[Trap, Verdict]]) -> str:
    lines = ["| trap | action | worst allowed | matches (rule: action) |", "|---|---|---|---|"]
    for trap, verdict in results:
        matches = ", ".join(f"{m.rule}: {m.action}{' (shadow)' if m.shadow else ''}" for m in verdict.matches)
        flag = " **FAIL**" if verdict.action != trap.worst and verdict.action == "block" else ""
        lines.append(f"| {trap.label} | {verdict.action}{flag} | {trap.worst} | {matches or '—'} |")
    return "\n".join(lines)
