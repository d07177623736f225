"""Folded readings: hits that exist only because a fold read the text as something else.

The homophone view (沙比 read as 傻逼), its near-homophone variant and the emoji stand-in views
(🐴 read as 马, and so 妈) find what people write to dodge a keyword, and also ordinary text
that merely sounds like one. A rule's match that holds only through such hits is therefore at
most `review` unless the rule says otherwise (`folded_action`): the matcher marks those hits
(`FoldedHits`), and `holds_only_folded` re-evaluates a matched rule on the exact hits alone.
"""

from __future__ import annotations

from service.engine.conditions import Condition, EvalContext, ScanResult
from service.engine.patterns import Hits, Span


class FoldedHits(dict[int, list[Span]]):
    """A scan's hits (pattern id → spans) of which `folded` exist only through a folded reading."""

    __slots__ = ("folded",)

    def __init__(self, hits: Hits, folded: set[tuple[int, Span]]) -> None:
        super().__init__(hits)
        self.folded = folded

    def exact(self) -> Hits:
        """The hits without the folded ones."""
        kept: Hits = {}
        for pattern_id, spans in self.items():
            exact = [span for span in spans if (pattern_id, span) not in self.folded]
            if exact:
                kept[pattern_id] = exact
        return kept


def holds_only_folded(condition: Condition, ctx: EvalContext) -> bool:
    """Whether `condition` (which holds) fails once folded hits are taken away."""
    scans = ctx.scans
    if not any(scan is not None and isinstance(scan.hits, FoldedHits) for scan in scans):
        return False
    exact: list[ScanResult | None] = [
        ScanResult(scan.field, scan.original, scan.normalized, scan.hits.exact())
        if scan is not None and isinstance(scan.hits, FoldedHits)
        else scan
        for scan in scans
    ]
    # Counters see a scratch list: the event was already counted (or not) by the real evaluation.
    probe = EvalContext(ctx.event, ctx.at, exact, ctx.counts, [] if ctx.sightings is not None else None, ctx.scores)
    return not condition.holds(probe, [])
