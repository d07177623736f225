"""Verdicts of the engine on the mini pack: actions, severities, evidence offsets, shadow, unless."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.engine.classifier import Engine
from service.events import Chat, ChatEvent, Payment, Sender, event_from_object

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def text_event(text: str) -> ChatEvent:
    return ChatEvent(id="e1", text=text, chat=Chat(id="c1"))


@pytest.mark.parametrize(
    ("text", "action", "severity", "rules"),
    [
        # plain marking
        ("这份是机密文件", "block", "high", ["secret_leak.marking"]),
        # traditional form of the marking
        ("這份是機密文件", "block", "high", ["secret_leak.marking"]),
        # separators wedged between CJK characters
        ("机 * 密", "block", "high", ["secret_leak.marking"]),
        # zero-width space between the characters
        ("机\u200b密", "block", "high", ["secret_leak.marking"]),
        # an emoji newer than this Python's Unicode database (U+1FAE8, Unicode 15) is still a separator
        ("机\U0001FAE8密", "block", "high", ["secret_leak.marking"]),
        # sentence punctuation does not join characters
        ("机，密", "allow", "none", []),
        # the training notice trap: `not` excludes it
        ("下周保密培训，讲机密等级", "allow", "none", []),
        # Latin lexicon term, case- and width-folded
        ("you ＩＤＩＯＴ", "review", "medium", ["improper_remarks.insult"]),
        # Latin terms match whole words only
        ("an idiotic plan", "allow", "none", []),
        # unless lowers to allow: the match stays, the verdict does not rise
        ("不要说傻逼", "allow", "none", ["improper_remarks.insult"]),
        # shadow rule reported, never acted on
        ("发红包，请投票给我", "allow", "none", ["vote_buying.near"]),
        # two live rules: the strongest action and the highest severity win
        ("机密 傻逼", "block", "high", ["secret_leak.marking", "improper_remarks.insult"]),
        # empty text
        ("", "allow", "none", []),
    ],
)
def test_text_verdicts(mini_engine: Engine, text: str, action: str, severity: str, rules: list[str]) -> None:
    verdict = mini_engine.classify(text_event(text), NOW)
    assert (verdict.action, verdict.severity) == (action, severity)
    assert [m.rule for m in verdict.matches] == rules
    assert verdict.event_id == "e1"
    assert verdict.ruleset == mini_engine.ruleset
    assert verdict.decided_at == NOW


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("这份是机密文件", [(3, 5, "机密")]),
        ("這份是機 密", [(3, 6, "機 密")]),
        ("a\u200bb 机\u200b\u200b密!", [(4, 8, "机\u200b\u200b密")]),
        ("😀😀 機密", [(3, 5, "機密")]),  # astral characters before the hit
        ("you I.D.I.O.T now", [(4, 13, "I.D.I.O.T")]),
    ],
)
def test_evidence_indexes_the_original_text(mini_engine: Engine, text: str, spans: list[tuple[int, int, str]]) -> None:
    verdict = mini_engine.classify(text_event(text), NOW)
    evidence = [(e.start, e.end, e.text) for m in verdict.matches for e in m.evidence]
    assert evidence == spans
    for start, end, fragment in spans:
        assert text[start:end] == fragment


def test_unless_keeps_match_with_lowered_action(mini_engine: Engine) -> None:
    verdict = mini_engine.classify(text_event("不要说傻逼"), NOW)
    (match,) = verdict.matches
    assert match.action == "allow"
    assert "lowered: quoting to warn" in match.reason
    assert {e.text for e in match.evidence} == {"傻逼", "不要说"}


def test_shadow_match_is_flagged(mini_engine: Engine) -> None:
    verdict = mini_engine.classify(text_event("发红包，请投票给我"), NOW)
    (match,) = verdict.matches
    assert match.shadow is True
    assert verdict.action == "allow"


@pytest.mark.parametrize(
    ("roles", "direction", "expected"),
    [
        (("official",), "receive", "block"),  # an official accepting money: any amount
        (("member",), "receive", "allow"),  # members are not bound by the rule
        (("official",), "send", "allow"),  # sending is not accepting
    ],
)
def test_event_conditions(mini_engine: Engine, roles: tuple[str, ...], direction: str, expected: str) -> None:
    event = ChatEvent(
        id="p1",
        type="red_packet",
        chat=Chat(id="c"),
        sender=Sender(id="u", roles=roles),
        payment=Payment(amount=0.01, direction=direction),  # type: ignore[arg-type]
    )
    assert mini_engine.classify(event, NOW).action == expected


@pytest.mark.parametrize(
    ("sent_at", "in_window"),
    [
        ("2026-03-01T00:00:00+08:00", True),  # first instant of the first day
        ("2026-02-28T23:59:59+08:00", False),  # just before
        ("2026-03-15T23:59:59+08:00", True),  # the end date is inclusive
        ("2026-03-15T16:00:00+00:00", False),  # = 2026-03-16 00:00 +08:00
        ("2026-02-28T16:00:00Z", True),  # = 2026-03-01 00:00 +08:00, written in UTC
        ("2026-02-28T15:59:59Z", False),
        ("2026-03-01T02:30:00+10:30", True),  # = 2026-02-28T16:00Z, another offset
    ],
)
def test_calendar_windows(mini_engine: Engine, sent_at: str, in_window: bool) -> None:
    event = event_from_object(
        {"id": "t", "type": "transfer", "sent_at": sent_at, "payment": {"amount": 5, "direction": "send"}}
    )
    rules = [m.rule for m in mini_engine.classify(event, NOW).matches]
    assert ("vote_buying.payment_in_election" in rules) is in_window


def test_missing_sent_at_uses_the_receipt_time(mini_engine: Engine) -> None:
    event = event_from_object({"id": "t", "type": "transfer", "payment": {"amount": 5, "direction": "send"}})
    inside = datetime(2026, 3, 5, tzinfo=UTC)
    assert mini_engine.classify(event, inside).matches
    assert not mini_engine.classify(event, NOW).matches


def test_hostile_text_is_classified(mini_engine: Engine) -> None:
    # 1 MB of repeated hits: bounded spans per pattern, a clean verdict
    verdict = mini_engine.classify(text_event("机密" * 500_000), NOW)
    assert verdict.action == "block"
    assert len(verdict.matches[0].evidence) == 1
    # lone surrogates and control characters
    verdict = mini_engine.classify(text_event("\ud800机\udfff密\x00"), NOW)
    assert verdict.action == "block"


def test_batch_equals_single(mini_engine: Engine) -> None:
    events = [text_event(t) for t in ("机密", "hello", "傻逼", "")]
    assert mini_engine.classify_batch(events, NOW) == [mini_engine.classify(e, NOW) for e in events]
