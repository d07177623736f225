"""Evasion robustness: perturb only the evidence of what the pack matched, classify again, and
count the fraction of (text, category) pairs still matched with the same category.

A pair counts for a kind only when the kind changed the text (leetspeak on a hanzi-only span,
pinyin on a Latin-only span… do not apply).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from loadtest.quality import perturb
from loadtest.quality.scoring import CLOCK, text_event
from service.engine.classifier import Engine
from service.events import Match


@dataclass(frozen=True, slots=True)
class Miss:
    """A pair the kind defeated: what was matched, and what the perturbation made of it."""

    category: str
    original: str
    perturbed: str
    pieces: tuple[tuple[str, str], ...]  # (evidence, its rewrite) per rewritten span


@dataclass
class KindResult:
    applicable: int = 0
    kept: int = 0
    misses: list[Miss] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return self.kept / self.applicable if self.applicable else None


def _targets(matches: Sequence[Match]) -> dict[str, list[tuple[int, int]]]:
    """Category → evidence spans in the text field, over matches that were not lowered to allow."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for match in matches:
        if match.action == "allow":
            continue
        for evidence in match.evidence:
            if evidence.field == "text" and evidence.end > evidence.start:
                spans.setdefault(match.category, []).append((evidence.start, evidence.end))
    return spans


def robustness(engine: Engine, texts: Sequence[str], kinds: Sequence[str] | None = None,
               max_misses: int = 5) -> dict[str, KindResult]:
    """Per perturbation kind, how many matched (text, category) pairs survive it."""
    chosen = list(kinds or perturb.KINDS)
    results = {kind: KindResult() for kind in chosen}
    originals = engine.classify_batch([text_event(f"orig:{i}", t) for i, t in enumerate(texts)], CLOCK)
    # kind, category, original, perturbed, (evidence, rewrite) pieces
    jobs: list[tuple[str, str, str, str, tuple[tuple[str, str], ...]]] = []
    for text, verdict in zip(texts, originals, strict=True):
        for category, spans in _targets(verdict.matches).items():
            for kind in chosen:
                rng = random.Random(zlib.crc32(f"{kind}\0{text}".encode()))
                perturbed, pieces = perturb.rewrite(text, spans, perturb.KINDS[kind], rng)
                if perturbed != text:
                    jobs.append((kind, category, text, perturbed, tuple(pieces)))
    verdicts = engine.classify_batch([text_event(f"p:{i}", job[3]) for i, job in enumerate(jobs)], CLOCK)
    for (kind, category, original, perturbed, rewrites), verdict in zip(jobs, verdicts, strict=True):
        result = results[kind]
        result.applicable += 1
        if any(m.category == category and m.action != "allow" for m in verdict.matches):
            result.kept += 1
        elif len(result.misses) < max_misses:
            result.misses.append(Miss(category, original, perturbed, rewrites))
    return results
