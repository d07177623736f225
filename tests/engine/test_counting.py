"""Counter conditions in the engine: sightings without counts, matches with them, keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.engine.classifier import Engine
from service.engine.counting import Sighting
from service.events import Chat, ChatEvent, Media, Sender
from service.rules.loader import load_pack

PACKS = Path(__file__).resolve().parent.parent / "packs"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_pack(PACKS / "counters")


def text_event(text: str, *, chat: str = "c1", sender: str = "s1", event_id: str = "e1") -> ChatEvent:
    return ChatEvent(id=event_id, text=text, chat=Chat(chat), sender=Sender(sender))


def sightings_of(engine: Engine, event: ChatEvent) -> list[Sighting]:
    outcome = engine.evaluate(event, NOW)
    assert not any(m.rule.startswith(("rumor.spread", "vote.")) for m in outcome.verdict.matches)
    assert outcome.verdict == engine.classify(event, NOW)  # the verdict alone is the same
    return list(outcome.sightings)


def test_a_gated_event_is_counted_and_matches_only_with_counts(engine: Engine) -> None:
    event = text_event("网传明天停水，速转")
    found = sightings_of(engine, event)
    assert len(found) == 1
    sighting = found[0]
    assert sighting.state_key.startswith("rumor.spread#0:content/chat/1h|t:")
    assert (sighting.member, sighting.at_least, sighting.within_seconds) == ("c1", 3, 3600.0)
    assert sighting.at == NOW.timestamp()  # no sent_at: the receipt time the caller passed
    assert not engine.classify(event, NOW, counts={sighting.state_key: 2}).matches
    verdict = engine.classify(event, NOW, counts={sighting.state_key: 3})
    assert [m.rule for m in verdict.matches] == ["rumor.spread"]
    assert verdict.matches[0].evidence[0].text == "网传"  # the gate's evidence, original offsets


def test_an_ungated_event_is_not_counted(engine: Engine) -> None:
    assert sightings_of(engine, text_event("今天的会议改到下午三点")) == []


def test_plain_classify_never_counts_nor_matches(engine: Engine) -> None:
    """/check and callers without counters: a counter rule neither matches nor records."""
    assert engine.has_counters
    assert engine.classify(text_event("网传明天停水，速转"), NOW).matches == ()


def test_the_content_key_folds_spacing_punctuation_width_and_script(engine: Engine) -> None:
    keys = {sightings_of(engine, text_event(t))[0].state_key
            for t in ("网传明天停水，速转", "網傳明天停水 速轉!!", "网传 明天停水...速转")}
    assert len(keys) == 1
    other = sightings_of(engine, text_event("网传后天停电，速转"))[0].state_key
    assert other not in keys


def test_two_counters_give_two_sightings_in_rule_order(engine: Engine) -> None:
    found = sightings_of(engine, text_event("明天投我一票", sender="s9", chat="c7"))
    assert [s.state_key.split("|")[0] for s in found] == [
        "vote.sender_and_content#0:content/chat/1h", "vote.sender_and_content#1:sender/chat/1h",
    ]
    assert found[1].state_key.endswith("|s9")
    counts = {found[0].state_key: 2, found[1].state_key: 1}
    assert not engine.classify(text_event("明天投我一票", sender="s9"), NOW, counts=counts).matches
    counts[found[1].state_key] = 2
    assert engine.classify(text_event("明天投我一票", sender="s9"), NOW, counts=counts).matches


def test_an_event_without_the_counted_thing_is_not_counted(engine: Engine) -> None:
    no_sender = ChatEvent(id="e", text="明天投我一票", chat=Chat("c1"))
    assert sightings_of(engine, no_sender) == []  # one of its two keys is missing


def test_media_content_key_is_the_hash() -> None:
    from service.engine.counting import content_fingerprint
    from service.rules.normalizers import Layers, build_normalizer

    fold = build_normalizer(Layers().text_side())
    event = ChatEvent(id="m", type="image", media=Media(sha256="AB" * 32))
    assert content_fingerprint(event, fold) == "s:" + "ab" * 32
    assert content_fingerprint(ChatEvent(id="x", text="!!!"), fold) is None
