"""The `classifier` condition: a pack model's score of a text field, with the evidence of why.

The score of one (model, field) is computed once per event and shared by every rule that asks
(`EvalContext.scores`); a caller that scored a whole batch first (`NgramModel.score_batch`) can
put the scores there before evaluating. Evidence: the score itself (field `classifier.<model>`,
empty span, text `0.934`), then the spans of the original text whose n-grams added most.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from service.engine.conditions import EvalContext
from service.engine.textmodel import NgramModel
from service.events import ChatEvent, Evidence

_TEXT_OF: Final[dict[str, Callable[[ChatEvent], str]]] = {
    "text": lambda event: event.text,
    "file.name": lambda event: event.file.name if event.file is not None else "",
    "link.url": lambda event: event.link.url if event.link is not None else "",
}
MAX_SPANS: Final = 3


@dataclass(frozen=True, slots=True, eq=False)
class ModelScore:
    model: NgramModel
    field: str
    min_score: float
    below: float | None = None
    min_chars: int = 1  # characters the model reads (`NgramModel.read_length`), at least

    def holds(self, ctx: EvalContext, evidence: list[Evidence]) -> bool:
        text = _TEXT_OF[self.field](ctx.event)
        if not text or (self.min_chars > 1 and self.model.read_length(text) < self.min_chars):
            return False
        key = (self.model.name, self.field)
        scores = ctx.scores
        if scores is None:
            scores = ctx.scores = {}
        score = scores.get(key)
        if score is None:
            score = scores[key] = self.model.score(text)
        if score < self.min_score or (self.below is not None and score >= self.below):
            return False
        evidence.append(Evidence(f"classifier.{self.model.name}", 0, 0, f"{score:.3f}"))
        _, spans = self.model.contributions(text, MAX_SPANS)
        evidence.extend(Evidence(self.field, s.start, s.end, text[s.start : s.end]) for s in spans)
        return True
