"""`python -m loadtest.quality --data DIR [--rules DIR] [--limit N] [--json PATH] [--misses N]`

Prints markdown: precision/recall per category on COLD and SWSR, the false positives, evasion
robustness per perturbation kind, and the benign-trap table. Exit 0, or 1 when a trap was acted
on beyond what it may receive (a benign trap blocked is a release blocker), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from loadtest.quality import report
from loadtest.quality.corpus import example_texts
from loadtest.quality.datasets import load_cold, load_swsr
from loadtest.quality.evasion import KindResult, robustness
from loadtest.quality.perturb import KINDS
from loadtest.quality.scoring import DatasetScore, acted, classify_texts, score
from loadtest.quality.traps import Trap, check_traps, violations
from service.engine.classifier import Engine
from service.errors import PackError
from service.events import Verdict
from service.rules.loader import load_pack
from service.settings import bundled_rules_dir

OBSCENE_OR_IMPROPER = "obscene_content|improper_remarks"


@dataclass(frozen=True)
class Figures:
    engine: Engine
    load_seconds: float
    cold: DatasetScore
    swsr: DatasetScore
    evasion: dict[str, dict[str, KindResult]]  # corpus → kind → result
    traps: list[tuple[Trap, Verdict]]


def evaluate(
    data: Path, rules: Path, limit: int | None = None, engine: Engine | None = None, max_misses: int = 5
) -> Figures:
    """Every figure the harness reports, as plain values (also used by the smoke test).
    `engine`, when given, must be the pack in `rules` already loaded (its load time is then 0)."""
    started = time.perf_counter()
    engine = engine or load_pack(rules)
    load_seconds = time.perf_counter() - started
    cold_rows, swsr_rows = load_cold(data, limit), load_swsr(data, limit)
    cold_verdicts = classify_texts(engine, ((r.id, r.text) for r in cold_rows))
    swsr_verdicts = classify_texts(engine, ((r.id, r.text) for r in swsr_rows))
    cold = score("COLD", cold_rows, cold_verdicts)
    swsr = score("SWSR", swsr_rows, swsr_verdicts,
                 union={OBSCENE_OR_IMPROPER: {"obscene_content", "improper_remarks"}})
    matched_rows = [r.text for r, v in zip([*cold_rows, *swsr_rows], [*cold_verdicts, *swsr_verdicts], strict=True)
                    if acted(v) or any(m.action != "allow" for m in v.matches)]
    evasion = {
        "pack examples": robustness(engine, example_texts(rules), max_misses=max_misses),
        "eval rows": robustness(engine, matched_rows, max_misses=max_misses),
    }
    traps = check_traps(engine)
    return Figures(engine, load_seconds, cold, swsr, evasion, traps)


def render(figures: Figures, fp_limit: int, misses: int = 2, kinds: Sequence[str] = ()) -> str:
    cold, swsr, evasion, traps = figures.cold, figures.swsr, figures.evasion, figures.traps
    ruleset = figures.engine.ruleset
    pct = report.pct
    parts = [
        f"# Detection quality — {ruleset.name} {ruleset.version} ({ruleset.digest[:19]}…), "
        f"pack load {figures.load_seconds:.2f} s",
        "## Headline",
        f"- COLD improper_remarks recall on offensive rows: {pct(cold.recall('improper_remarks'))} "
        f"(precision {pct(cold.precision('improper_remarks'))})",
        f"- COLD false-positive rate on safe rows (any category): {pct(cold.false_positive_rate())} "
        f"(safe {pct(cold.group_rate('safe'))}, "
        f"safe anti-bias {pct(cold.group_rate('safe_anti_bias'))})",
        f"- SWSR obscene_content|improper_remarks recall on SO rows: "
        f"{pct(swsr.group_rate('SO', OBSCENE_OR_IMPROPER))}; on all sexist rows "
        f"{pct(swsr.recall(OBSCENE_OR_IMPROPER))}",
        f"- SWSR false-positive rate on non-sexist rows (any category): {pct(swsr.false_positive_rate())}",
        "## Per category",
        report.dataset_table([cold, swsr]),
        "## By label group",
        report.group_table(cold, ["improper_remarks", "*"]),
        "",
        report.group_table(swsr, ["obscene_content", "improper_remarks", OBSCENE_OR_IMPROPER, "*"]),
        "## False positives (negative rows flagged)",
        report.false_positive_listing(cold, fp_limit),
        "",
        report.false_positive_listing(swsr, fp_limit),
        "## Evasion robustness (same category still matched after perturbing the evidence)",
        report.evasion_table(evasion),
        "",
        f"Misses (first {misses} per source and kind; `--misses N` for more):",
        report.evasion_misses(evasion, misses, kinds),
        "## Benign traps",
        report.trap_table(traps),
    ]
    return "\n".join(parts) + "\n"


def _json(figures: Figures) -> dict[str, object]:
    out: dict[str, object] = {"load_seconds": figures.load_seconds}
    for s in (figures.cold, figures.swsr):
        out[s.name] = {
            "positives": s.positives, "negatives": s.negatives,
            "flagged_positive": dict(s.flagged_positive), "flagged_negative": dict(s.flagged_negative),
            "false_positive_rate": s.false_positive_rate(),
            "groups": {f"{g}|{c}": n for (g, c), n in s.flagged_by_group.items()},
            "group_sizes": dict(s.group_sizes),
        }
    out["evasion"] = {src: {k: {"applicable": r.applicable, "kept": r.kept} for k, r in kinds.items()}
                      for src, kinds in figures.evasion.items()}
    out["traps"] = [{"label": t.label, "action": v.action, "worst": t.worst,
                     "matches": msgspec.to_builtins(v.matches)} for t, v in figures.traps]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="evaluation data directory: cold/ and swsr/ as docs/quality.md describes")
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir(), help="rule pack (default: bundled)")
    parser.add_argument("--limit", type=int, help="rows per dataset (spread over the file), for a quick run")
    parser.add_argument("--fp", type=int, default=25, help="false positives listed per dataset")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--misses", type=int, default=2, help="evasion misses listed per source and kind")
    parser.add_argument("--kind", action="append", default=[], choices=sorted(KINDS),
                        help="list misses of this perturbation kind only (repeatable)")
    args = parser.parse_args(argv)
    try:
        figures = evaluate(args.data, args.rules, args.limit, max_misses=max(args.misses, 0))
    except PackError as exc:
        print(exc, file=sys.stderr)
        return 2
    sys.stdout.write(render(figures, args.fp, args.misses, args.kind))
    if args.json:
        args.json.write_text(json.dumps(_json(figures), ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    bad = violations(figures.traps)
    for trap, verdict in bad:
        print(f"TRAP FAILED: {trap.label!r} got {verdict.action} (at most {trap.worst}): "
              + ", ".join(m.rule for m in verdict.matches), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
