"""Every evasion the layers exist for is caught, with evidence that slices the original text."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.engine.classifier import Engine
from service.events import ChatEvent
from service.rules.loader import load_pack

PACK = Path(__file__).resolve().parent.parent / "packs" / "evasion"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_pack(PACK)


def _evidence(engine: Engine, text: str, rule: str) -> list[tuple[int, int, str]]:
    verdict = engine.classify(ChatEvent(id="e", text=text), NOW)
    return [(e.start, e.end, e.text) for m in verdict.matches if m.rule == rule for e in m.evidence]


CAUGHT = [
    # traditional → simplified (OpenCC t2s)
    ("这份是機密文件", "secret.marking", (3, 5)),
    # separators wedged between hanzi: space, symbol, emoji that stands for nothing
    ("机 密", "secret.marking", (0, 3)),
    ("机*密", "secret.marking", (0, 3)),
    ("红🌹包拿好", "payment.red_packet", (0, 3)),
    # zero-width characters between the letters
    ("机\u200b\u200d密", "secret.marking", (0, 4)),
    # full-width Latin (width folding) and upper case (case folding)
    ("看ｐｏｒｎ", "obscene.en", (1, 5)),
    ("PORN here", "obscene.en", (0, 4)),
    # leet digits and symbols, also spelled out letter by letter
    ("p0rn links", "obscene.en", (0, 4)),
    ("p 0 r n", "obscene.en", (0, 7)),
    ("you 1d10t", "obscene.en", (4, 9)),
    ("you !d10+", "obscene.en", (4, 9)),  # symbols at the ends, where \b cannot stand
    # pinyin: joined, spaced, capitalised, full-width, next to hanzi
    ("hongbao 已发", "payment.red_packet", (0, 7)),
    ("hong bao", "payment.red_packet", (0, 8)),
    ("HongBao!", "payment.red_packet", (0, 7)),
    ("ｈｏｎｇｂａｏ", "payment.red_packet", (0, 7)),
    ("发jimi文件", "secret.marking", (1, 5)),
    ("dai gou 日本化妆品", "shop.side_business", (0, 7)),
    # homophones (the rule opted in): same toneless reading, other characters
    ("薇商招代理", "shop.side_business", (0, 2)),
    ("你个沙比", "insult.zh", (2, 4)),
    ("你个傻逼", "insult.zh", (2, 4)),  # the keyword itself, from the plain database
    # emoji standing for the whole keyword (CLDR name 红包), between hanzi, and by reading (🐔 鸡 ji)
    ("🧧", "payment.red_packet", (0, 1)),
    ("发🧧给你", "payment.red_packet", (1, 2)),
    ("发 🧧 给你", "payment.red_packet", (2, 3)),
    ("🐔密文件", "secret.marking", (0, 2)),
    ("代🐕", "shop.side_business", (0, 2)),
    # several layers at once: traditional + zero-width + separator
    ("機\u200b 密", "secret.marking", (0, 4)),
    # emoji with a variation selector: the selector is invisible, so the evidence is the emoji
    ("发🧧\ufe0f了", "payment.red_packet", (1, 2)),
    # a regex of a rule with homophones gets a twin over the homophone view
    ("嘉格100元", "shop.price", (0, 6)),
]


@pytest.mark.parametrize(("text", "rule", "span"), CAUGHT, ids=[c[0] for c in CAUGHT])
def test_evasion_is_caught_with_exact_evidence(engine: Engine, text: str, rule: str, span: tuple[int, int]) -> None:
    found = _evidence(engine, text, rule)
    start, end = span
    assert (start, end, text[start:end]) in found, found


MISSED = [
    # sentence punctuation never joins hanzi: 红，包括 is not 红包
    ("红，包括", "payment.red_packet"),
    # words that were really separate in Latin text are not glued
    ("red packet", "payment.red_packet"),
    # pinyin matches inside a longer run of letters only where the rest reads as pinyin
    ("hongbaoz", "payment.red_packet"),
    # leet keeps word boundaries too
    ("idiotic plan", "obscene.en"),
    ("p0rno", "obscene.en"),
    # digits in the text are not folded: prices stay prices
    ("价格100元", "obscene.en"),
    # the rule that switched pinyin and emoji off
    ("hongbao", "payment.literal_only"),
    ("发🧧给你", "payment.literal_only"),
    # homophones are off for rules that did not opt in
    ("泓包", "payment.red_packet"),
]


@pytest.mark.parametrize(("text", "rule"), MISSED, ids=[m[0] for m in MISSED])
def test_layers_do_not_overreach(engine: Engine, text: str, rule: str) -> None:
    assert _evidence(engine, text, rule) == []


def test_regex_of_a_homophone_rule_still_matches_its_own_characters(engine: Engine) -> None:
    assert _evidence(engine, "价格100元", "shop.price") == [(0, 6, "价格100元")]
