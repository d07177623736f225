"""The trigger index only skips rules that cannot hold: indexed and brute-force verdicts agree.

The classifier evaluates a rule only when one of its patterns hit or the event's kind (type, has a
link) can make it true without a hit (service.rules.triggers). Brute force evaluates every
rule on every event; the two must give the same verdicts, including on events whose fields are
mixed across types (a text event with a payment, a red packet with a link, …).
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from service.engine.classifier import Engine
from service.events import EVENT_TYPES, ChatEvent, Link
from service.rules.loader import load_pack
from service.rules.triggers import ALL_KINDS
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir

PACKS = Path(__file__).resolve().parent.parent / "packs"
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _brute_force(engine: Engine) -> Engine:
    every_rule = tuple(range(len(engine.rules)))
    return dataclasses.replace(engine, untriggered={kind: every_rule for kind in ALL_KINDS})


def _mixed_events(count: int, seed: int) -> list[ChatEvent]:
    """Sample traffic, then every other event re-typed and given another event's optional fields."""
    rng = random.Random(seed)
    traffic = SampleTraffic(seed, malformed_ratio=0.0)
    events = [msgspec.convert(traffic.event(NOW), ChatEvent) for _ in range(count)]
    donors = list(events)
    mixed = []
    for event in events:
        if rng.random() < 0.5:
            donor = rng.choice(donors)
            event = msgspec.structs.replace(
                event,
                type=rng.choice(EVENT_TYPES),
                payment=event.payment or donor.payment,
                media=event.media or donor.media,
                file=event.file or donor.file,
                link=event.link or donor.link or Link("https://shop9.taobao.com/x"),
                forward=event.forward or donor.forward,
            )
        mixed.append(event)
    return mixed


@pytest.mark.parametrize(
    "pack",
    [bundled_rules_dir(), PACKS / "mini", PACKS / "counters"],
    ids=lambda p: p.name,
)
def test_indexed_verdicts_equal_brute_force(pack: Path) -> None:
    engine = load_pack(pack)
    brute = _brute_force(engine)
    events = _mixed_events(3000, seed=11)
    exercised = 0
    for event in events:
        indexed = engine.evaluate(event, NOW)
        assert indexed == brute.evaluate(event, NOW), event  # verdict and sightings
        exercised += bool(indexed.verdict.matches or indexed.sightings)
    assert exercised > 0  # the events exercise the pack


def test_a_text_event_without_a_link_skips_link_host_rules() -> None:
    engine = load_pack(bundled_rules_dir())
    by_id = {rule.id: i for i, rule in enumerate(engine.rules)}
    shop_link = by_id["side_business.shop_link"]  # link_domain or a regex over the text
    assert shop_link not in engine.untriggered.get(("text", False), ())
    assert shop_link in engine.untriggered[("text", True)]
    # … and its regex still triggers it on a text event without a link.
    verdict = engine.classify(ChatEvent(id="e1", text="我的店铺 https://shop66.taobao.com 欢迎光临"), NOW)
    assert "side_business.shop_link" in {m.rule for m in verdict.matches}
